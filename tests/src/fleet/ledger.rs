//! What each agent recorded against what the hub counted. An agent's totals come from its own
//! store (`/v1/telemetry`), the hub's from its console (`synapsectl functions` and `agents`).
//! The books balance when, for every function, the hub's invocations, cold starts and
//! instance exits equal the sum of what the agents that run it recorded (and as many agents
//! report it), the hub's total for each agent is the sum of that agent's functions, every
//! batch sequence the hub holds was accepted once (`batches_accepted == last_sequence`), and the
//! agent's outbox is empty with nothing dropped or refused. A lost interval leaves the hub
//! short; an interval counted twice leaves it over.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{Agent, Hub};

/// The counters both sides keep per function, as whole numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub invocations: u64,
    pub cold_starts: u64,
    pub instance_exits: u64,
}

impl Counts {
    fn of(v: &Value) -> Self {
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        Self {
            invocations: n("invocations"),
            cold_starts: n("cold_starts"),
            instance_exits: n("instance_exits"),
        }
    }
}

/// One agent's balanced book.
#[derive(Debug, Clone)]
pub struct Book {
    pub agent: String,
    pub functions: BTreeMap<String, Counts>,
    pub batches: u64,
    pub invocations: u64,
}

impl Book {
    pub fn cold_starts(&self) -> u64 {
        self.functions.values().map(|c| c.cold_starts).sum()
    }
}

/// An agent's totals per function, from its store.
pub fn recorded(agent: &Agent) -> Option<BTreeMap<String, Counts>> {
    let telemetry = agent.telemetry()?;
    Some(
        telemetry
            .as_object()?
            .iter()
            .map(|(f, v)| (f.clone(), Counts::of(&v["totals"])))
            .collect(),
    )
}

/// The hub's fleet-wide totals per function.
pub fn counted(hub: &Hub) -> Option<BTreeMap<String, (Counts, u64)>> {
    let listed = hub.try_ctl(&["functions"]).ok()?;
    Some(
        listed
            .as_array()?
            .iter()
            .map(|f| {
                let name = f["function"].as_str().unwrap_or_default().to_owned();
                (name, (Counts::of(f), f["agents"].as_u64().unwrap_or(0)))
            })
            .collect(),
    )
}

/// Why the books do not balance (yet), or the balanced books.
fn compare(hub: &Hub, agents: &[&Agent]) -> Result<Vec<Book>, String> {
    let before: Vec<_> = agents.iter().map(|a| recorded(a)).collect();
    let fleet = counted(hub).ok_or("the hub's console did not answer")?;
    let listed = hub.try_ctl(&["agents"])?;
    let after: Vec<_> = agents.iter().map(|a| recorded(a)).collect();
    if before != after || before.iter().any(Option::is_none) {
        return Err("an agent's totals moved while they were read".into());
    }
    let recorded: Vec<BTreeMap<String, Counts>> = before.into_iter().flatten().collect();
    // Every function's fleet total is the sum of what the agents that have it recorded.
    let mut expected: BTreeMap<&str, (Counts, u64)> = BTreeMap::new();
    for functions in &recorded {
        for (f, c) in functions {
            let (sum, agents) = expected.entry(f).or_default();
            sum.invocations += c.invocations;
            sum.cold_starts += c.cold_starts;
            sum.instance_exits += c.instance_exits;
            *agents += 1;
        }
    }
    for (f, want) in &expected {
        let got = fleet.get(*f).copied().unwrap_or_default();
        if got != *want {
            return Err(format!(
                "{f}: recorded {want:?} (total, agents), the hub {got:?}"
            ));
        }
    }
    if fleet.len() != expected.len() {
        let names: Vec<_> = fleet.keys().collect();
        return Err(format!(
            "the hub counts functions no agent recorded: {names:?}"
        ));
    }
    let mut books = Vec::new();
    for (agent, functions) in agents.iter().zip(recorded) {
        let id = &agent.id;
        let view = listed
            .as_array()
            .and_then(|l| l.iter().find(|a| a["agent_id"] == id.as_str()))
            .ok_or_else(|| format!("{id} is not listed by the hub"))?;
        let n = |k: &str| view[k].as_u64().unwrap_or(u64::MAX);
        let outbox = |k: &str| view["outbox"][k].as_u64().unwrap_or(u64::MAX);
        let sum: u64 = functions.values().map(|c| c.invocations).sum();
        let checks = [
            ("invocations", n("invocations"), sum),
            ("last_sequence", n("last_sequence"), n("batches_accepted")),
            ("outbox pending", outbox("pending"), 0),
            ("outbox dropped", outbox("dropped"), 0),
            ("intervals_refused", n("intervals_refused"), 0),
            ("outbox_resets", n("outbox_resets"), 0),
        ];
        for (what, got, want) in checks {
            if got != want {
                return Err(format!(
                    "{id}: {what} {got} at the hub, {want} expected: {view}"
                ));
            }
        }
        books.push(Book {
            agent: id.clone(),
            functions,
            batches: n("batches_accepted"),
            invocations: sum,
        });
    }
    Ok(books)
}

/// Waits (at most `limit`) until the books of `agents` balance, once their traffic stopped;
/// fails with the last difference otherwise. Each agent has first closed the interval in
/// which its traffic ended, so its totals hold every invocation it served.
pub fn settle(hub: &Hub, agents: &[&Agent], limit: Duration) -> Vec<Book> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    crate::wait_for("every agent's interval after the traffic", limit, || {
        agents.iter().all(|a| a.closed_since(now)).then_some(())
    });
    let deadline = Instant::now() + limit;
    loop {
        match compare(hub, agents) {
            Ok(books) => return books,
            Err(why) if Instant::now() >= deadline => {
                panic!("the books did not balance within {limit:?}: {why}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// One line per agent, for the report.
pub fn print(books: &[Book]) {
    for b in books {
        eprintln!(
            "ledger: {}: {} batches, {} invocations, {} cold starts over {} functions, equal at the hub",
            b.agent,
            b.batches,
            b.invocations,
            b.cold_starts(),
            b.functions.len()
        );
    }
}
