//! The `sandboxer` binary: everything happens in `sandboxer::cli`.

fn main() -> std::process::ExitCode {
    sandboxer::cli::main()
}
