//! Demo services and the `tapstack` command line.

pub mod api_echo;
pub mod cli;
pub mod config;
pub mod connect;
pub mod evloop;
pub mod http;
pub mod obs;
pub mod run;
pub mod services;
pub mod workers;
pub mod ws;
