fn main() {
    std::process::exit(tapstack::apps::cli::main());
}
