//! `brinkctl`: control a running brinkd over its Unix socket.

fn main() -> std::process::ExitCode {
    brink_api::cli::main()
}
