//! Temporary driver for the matching benchmark while it is developed (moves to the CLI).
#[path = "../../pipeline/src/bench/matching.rs"]
mod matching;

fn main() -> anyhow::Result<()> {
    let mut args = matching::MatchBenchArgs::default();
    for arg in std::env::args().skip(1) {
        let (k, v) = arg.split_once('=').expect("key=value");
        match k {
            "workers" => args.workers = v.parse()?,
            "tenants" => args.tenants = v.parse()?,
            "rules" => args.rules = v.parse()?,
            "events" => args.events = v.parse()?,
            "batch" => args.batch = v.parse()?,
            "updates" => args.rule_updates_per_sec = v.parse()?,
            _ => anyhow::bail!("unknown {k}"),
        }
    }
    let report = matching::run(&args)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
