//! `detcd-bench`: a load tool for any etcd v3 endpoint (detcd or etcd), in the style of etcd's
//! `benchmark` tool. `detcd-bench --help` lists the commands and flags; the work is done by the
//! `detcd_benches` library.
//!
//! `detcd-bench put --endpoints=127.0.0.1:2379 --clients=100 --total=100000 --val-size=256`

use std::process::ExitCode;

use detcd_benches::options::{parse, Parsed, USAGE};
use detcd_benches::{commands, Error};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, options) = match parse(&args) {
        Ok(Parsed::Run(command, options)) => (command, options),
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("detcd-bench: {e}\nRun 'detcd-bench --help' for usage.");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("detcd-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(&command, &options)) {
        Ok(report) => {
            print!("{}", report.render(options.output));
            ExitCode::SUCCESS
        }
        Err(e @ Error::Usage(_)) => {
            eprintln!("detcd-bench: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("detcd-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
