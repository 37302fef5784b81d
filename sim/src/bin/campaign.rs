//! `detcd-campaign`: runs seeds of the simulation scenarios and prints a summary table.
//!
//! ```text
//! detcd-campaign [--scenario NAME|all|planted] [--seed FIRST] [--seeds N] [--until-caught] [--verbose] [--report FILE]
//! ```
//! Each failing seed prints its violations and the one command that replays it, and its HTML page
//! is written under `target/sim-failures/`, with the whole history as text. Exits 1 if any seed
//! failed (0 for `--until-caught` runs that caught their bug).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use detcd::planted::Bug;
use detcd_chaos::report::{campaign_markdown, CampaignRow};
use detcd_sim::scenario::{replay_command, run_seed, RunReport, Scenario};
use detcd_sim::scenarios;

struct Args {
    scenario: String,
    first_seed: u64,
    seeds: u64,
    until_caught: bool,
    verbose: bool,
    report: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args =
        Args { scenario: "all".into(), first_seed: 1, seeds: 10, until_caught: false, verbose: false, report: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--scenario" => args.scenario = value()?,
            "--seed" => args.first_seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--seeds" => args.seeds = value()?.parse().map_err(|e| format!("--seeds: {e}"))?,
            "--until-caught" => args.until_caught = true,
            "--verbose" => args.verbose = true,
            "--report" => args.report = Some(value()?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

fn selected(name: &str) -> Result<Vec<Scenario>, String> {
    match name {
        "all" => Ok(scenarios::suite()),
        "planted" => Ok(Bug::ALL.into_iter().map(scenarios::planted).collect()),
        name => scenarios::by_name(name).map(|s| vec![s]).ok_or_else(|| format!("no scenario named {name}")),
    }
}

fn progress(scenario: &str, done: u64, total: u64, failed: usize) {
    let width = 30;
    let filled = (done * width / total.max(1)) as usize;
    eprint!(
        "\r{scenario:<34} [{}{}] {done}/{total} seeds, {failed} failed ",
        "#".repeat(filled),
        ".".repeat(width as usize - filled)
    );
    let _ = std::io::stderr().flush();
}

fn report_failure(report: &RunReport) {
    eprintln!("\nFAILED {} seed {}:", report.scenario, report.seed);
    for violation in &report.violations {
        eprintln!("  {violation}");
    }
    eprintln!("  plan:\n{}", report.plan.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n"));
    let _ = std::fs::create_dir_all("target/sim-failures");
    if let Some(html) = &report.html {
        let path = format!("target/sim-failures/{}-seed-{}.html", report.scenario, report.seed);
        match std::fs::write(&path, html) {
            Ok(()) => eprintln!("  history page: {path}"),
            Err(e) => eprintln!("  could not write {path}: {e}"),
        }
    }
    let path = format!("target/sim-failures/{}-seed-{}.history.txt", report.scenario, report.seed);
    if std::fs::write(&path, dump(&report.history)).is_ok() {
        eprintln!("  whole history: {path}");
    }
    if !report.records.watches.is_empty() || !report.records.leases.is_empty() {
        let path = format!("target/sim-failures/{}-seed-{}.records.txt", report.scenario, report.seed);
        if std::fs::write(&path, dump_records(&report.records)).is_ok() {
            eprintln!("  watch streams and leases: {path}");
        }
    }
    eprintln!("  replay: {}", replay_command(report.scenario, report.seed));
}

/// One line per operation and fault, in invocation order.
fn dump(history: &detcd_chaos::history::History) -> String {
    use detcd_chaos::report::{describe_outcome, describe_request};
    let mut out = String::new();
    for fault in &history.faults {
        out.push_str(&format!("fault {:?}..{:?} ns: {}\n", fault.start_ns, fault.end_ns, fault.description));
    }
    for op in &history.ops {
        out.push_str(&format!(
            "#{} client {} via {} [{} .. {}] {} => {}\n",
            op.id,
            op.client,
            op.member,
            op.invoke_ns,
            op.complete_ns,
            describe_request(&op.request),
            describe_outcome(&op.outcome)
        ));
    }
    out
}

/// Every watch stream (one response a line) and every lease, as recorded.
fn dump_records(records: &detcd_sim::checks::Records) -> String {
    let mut out = String::new();
    for stream in &records.watches {
        out.push_str(&format!("{} created at {} ns, ended {:?}\n", stream.name(), stream.created_at, stream.ended));
        for response in &stream.responses {
            out.push_str(&format!(
                "  at {} ns header {} compact {} canceled {}: {:?}\n",
                response.at, response.header_revision, response.compact_revision, response.canceled, response.events
            ));
        }
    }
    for lease in &records.leases {
        out.push_str(&format!("{lease:?}\n"));
    }
    for finding in &records.findings {
        out.push_str(&format!("finding: {finding}\n"));
    }
    for line in &records.journal {
        out.push_str(&format!("journal: {line}\n"));
    }
    out
}

fn run_scenario(scenario: &Scenario, args: &Args, rows: &mut Vec<CampaignRow>) -> (usize, Option<u64>) {
    let mut row = CampaignRow::new(scenario.name);
    let (mut failed, mut caught_at) = (0, None);
    let (mut sim, mut wall) = (Duration::ZERO, Duration::ZERO);
    for k in 0..args.seeds {
        let report = run_seed(scenario, args.first_seed + k);
        row.seeds += 1;
        row.ops += report.ops as u64;
        row.faults += report.faults as u64;
        sim += report.sim_time;
        wall += report.wall_time;
        if args.verbose {
            eprintln!(
                "\n{} seed {}: {} ops ({} ok, {} indeterminate), {} faults, {:.1} s simulated in {:.2} s (checks {:.2} s), history {:016x}",
                report.scenario,
                report.seed,
                report.ops,
                report.ok_ops,
                report.indeterminate_ops,
                report.faults,
                report.sim_time.as_secs_f64(),
                report.wall_time.as_secs_f64(),
                report.check_time.as_secs_f64(),
                report.history_hash
            );
            for fault in &report.history.faults {
                eprintln!("  {:>8} ms  {}", fault.start_ns / 1_000_000, fault.description);
            }
            let members: Vec<&str> = report.states.iter().map(|(name, _, _)| name.as_str()).collect();
            eprintln!("  members at the end: {}", members.join(" "));
            for (reason, count) in &report.reasons {
                eprintln!("  {count:>6}  {reason}");
            }
            let records = &report.records;
            if !records.watches.is_empty() || !records.leases.is_empty() {
                let responses: usize = records.watches.iter().map(|w| w.responses.len()).sum();
                let events: usize = records.watches.iter().flat_map(|w| &w.responses).map(|r| r.events.len()).sum();
                let keepalives: usize = records.leases.iter().map(|l| l.keepalives.len()).sum();
                let attached: usize = records.leases.iter().map(|l| l.attached.len()).sum();
                let revoked = records.leases.iter().filter(|l| l.revoke.is_some()).count();
                eprintln!(
                    "  {} watch streams ({responses} responses, {events} events); {} leases ({attached} keys attached, {keepalives} keepalives, {revoked} revoked)",
                    records.watches.len(),
                    records.leases.len()
                );
            }
        }
        if !report.passed() {
            failed += 1;
            row.violations += 1;
            report_failure(&report);
            caught_at.get_or_insert(report.seed);
        }
        progress(scenario.name, k + 1, args.seeds, failed);
        if args.until_caught && caught_at.is_some() {
            break;
        }
    }
    eprintln!();
    row.sim_secs = sim.as_secs_f64();
    row.wall_secs = wall.as_secs_f64();
    rows.push(row);
    (failed, caught_at)
}

fn main() -> ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("detcd-campaign: {e}");
            return ExitCode::from(2);
        }
    };
    let scenarios = match selected(&args.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("detcd-campaign: {e}");
            return ExitCode::from(2);
        }
    };
    let mut rows = Vec::new();
    let mut all_ok = true;
    for scenario in &scenarios {
        let (failed, caught_at) = run_scenario(scenario, &args, &mut rows);
        if args.until_caught {
            match caught_at {
                Some(seed) => println!("{}: caught at seed {seed}", scenario.name),
                None => {
                    println!("{}: NOT caught in {} seeds", scenario.name, args.seeds);
                    all_ok = false;
                }
            }
        } else if failed > 0 {
            all_ok = false;
        }
    }
    let table = campaign_markdown(&rows);
    println!("{table}");
    if let Some(path) = &args.report {
        if let Err(e) = std::fs::write(path, &table) {
            eprintln!("detcd-campaign: cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
