//! `tidemark`: the commerce-analytics backend's binary.
//!
//! `tidemark serve` runs the server, `tidemark demo` a self-contained demonstration on embedded
//! defaults, `tidemark bench …` the benchmarks (JSON on stdout).

use clap::Parser;

/// mimalloc rather than glibc malloc: the dataflow and the HTTP path allocate and free many small
/// objects across threads, where glibc's free-list consolidation cost 40 % of matching time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    pipeline::cli::run(pipeline::cli::Cli::parse())
}
