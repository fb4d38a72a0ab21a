pub mod fault;
pub mod pcap;
