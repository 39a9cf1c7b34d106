//! `brinkd`: the brink daemon.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    brink_control::daemon::run(brink_control::daemon::Args::parse())
}
