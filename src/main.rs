//! The `imagegen` binary: parse the command line, then hand over to `cli`.

/// mimalloc instead of glibc's malloc: a worker allocates and frees many small buffers
/// per job on many threads, where glibc's arenas spent a quarter of the drain
/// benchmark's CPU (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    imagegen::cli::main()
}
