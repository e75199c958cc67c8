//! `synapsectl audit [--limit N]`: the console's audit log, newest first, as a table or
//! `-o json`. Times are UTC.

use serde_json::json;
use synapse_proto::console::v1::{AuditEntry, ListAuditRequest, console_client::ConsoleClient};

use crate::{
    Output,
    console::{Connection, print_json, status},
    render::table,
};

/// `unix_ms` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (proleptic Gregorian, UTC).
pub fn utc(unix_ms: i64) -> String {
    let (secs, ms) = (unix_ms.div_euclid(1000), unix_ms.rem_euclid(1000));
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

fn entry_json(e: &AuditEntry) -> serde_json::Value {
    json!({
        "seq": e.seq,
        "time": utc(e.unix_ms),
        "unix_ms": e.unix_ms,
        "role": e.role,
        "name": e.name,
        "peer": e.peer,
        "rpc": e.rpc,
        "summary": e.summary,
        "outcome": e.outcome,
        "message": e.message,
        "refused": e.refused,
    })
}

pub async fn run(connection: &Connection, output: Output, limit: u32) -> anyhow::Result<()> {
    let entries = ConsoleClient::new(connection.channel().await?)
        .list_audit(ListAuditRequest { limit })
        .await
        .map_err(status("list audit"))?
        .into_inner()
        .entries;
    match output {
        Output::Json => print_json(&entries.iter().map(entry_json).collect())?,
        Output::Table => {
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|e| {
                    let rpc = e.rpc.rsplit('.').next().unwrap_or(&e.rpc).to_owned();
                    vec![
                        utc(e.unix_ms),
                        format!("{}/{}", e.role, e.name),
                        e.peer.clone(),
                        rpc,
                        e.outcome.clone(),
                        e.summary.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["TIME (UTC)", "WHO", "PEER", "RPC", "OUTCOME", "SUMMARY"],
                    &rows
                )
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_utc_civil_dates() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::utc(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(super::utc(1_796_342_400_000), "2026-12-04T00:00:00.000Z");
    }
}
