//! The `igpt` binary: see `igpt --help`. All the work happens in the library; `cli` only parses
//! arguments and prints.

mod cli;

/// Large freed blocks are reused instead of being returned to the OS and page-faulted in again
/// on the next training step (see `igpt::memory`).
#[global_allocator]
static ALLOC: igpt::memory::CachingAllocator = igpt::memory::CachingAllocator::new();

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(cli::main(&argv));
}
