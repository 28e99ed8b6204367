//! The `igpt` binary: see `igpt --help`. All the work happens in the library; `cli` only parses
//! arguments and prints.

mod cli;

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(cli::main(&argv));
}
