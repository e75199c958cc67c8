//! The checks a gradient passes before it is stored: it answers the open round before its
//! deadline, on a known version no older than the staleness bound, with the model's shape,
//! finite values and at least one sample. Pure, so every refusal reason is tested alone.

use synapse_proto::link::v1::GradientReport;

use super::rounds::{RoundRecord, RoundState};

/// Why a gradient was refused; the name is the key of the round's refusal counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// For a round that is not open (closed, abandoned, unknown) or past its deadline.
    Late,
    /// Computed on a version older than the staleness bound allows.
    Stale,
    /// Computed on a version the registry does not hold.
    UnknownVersion,
    WrongShape,
    NonFinite,
    /// No training pairs behind it.
    Empty,
    /// The agent already answered this round.
    Duplicate,
}

impl Refusal {
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Late => "late",
            Refusal::Stale => "stale",
            Refusal::UnknownVersion => "unknown-version",
            Refusal::WrongShape => "wrong-shape",
            Refusal::NonFinite => "non-finite",
            Refusal::Empty => "empty",
            Refusal::Duplicate => "duplicate",
        }
    }
}

/// What intake needs to know besides the report.
pub struct Expectation<'a> {
    /// The open round, if any.
    pub open: Option<&'a RoundRecord>,
    pub now_unix_ms: i64,
    pub parameters: usize,
    pub staleness_bound: u64,
    /// The newest registered version (versions 1..=latest exist).
    pub latest_version: u64,
}

/// Checks `report` (the duplicate check needs the store and is made on insert).
pub fn check(report: &GradientReport, expect: &Expectation<'_>) -> Result<(), Refusal> {
    let open = match expect.open {
        Some(open) if open.round == report.round && open.state == RoundState::Open => open,
        _ => return Err(Refusal::Late),
    };
    if expect.now_unix_ms > open.deadline_unix_ms {
        return Err(Refusal::Late);
    }
    if report.model_version == 0 || report.model_version > expect.latest_version {
        return Err(Refusal::UnknownVersion);
    }
    if report.model_version + expect.staleness_bound < open.model_version {
        return Err(Refusal::Stale);
    }
    if report.gradient.len() != expect.parameters {
        return Err(Refusal::WrongShape);
    }
    if !report.loss.is_finite() || report.gradient.iter().any(|g| !g.is_finite()) {
        return Err(Refusal::NonFinite);
    }
    if report.samples == 0 {
        return Err(Refusal::Empty);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_round(round: u64, version: u64) -> RoundRecord {
        RoundRecord::open(round, version, 0, 1000, vec![])
    }

    fn report(round: u64, version: u64, gradient: Vec<f32>) -> GradientReport {
        GradientReport {
            round,
            model_version: version,
            gradient,
            samples: 10,
            loss: 0.5,
        }
    }

    fn expect(open: Option<&RoundRecord>, now: i64) -> Expectation<'_> {
        Expectation {
            open,
            now_unix_ms: now,
            parameters: 3,
            staleness_bound: 1,
            latest_version: 5,
        }
    }

    #[test]
    fn each_bad_gradient_is_refused_with_its_reason() {
        let round = open_round(7, 5);
        let ok = report(7, 5, vec![0.1, 0.2, 0.3]);
        assert_eq!(check(&ok, &expect(Some(&round), 10)), Ok(()));
        assert_eq!(check(&ok, &expect(Some(&round), 1001)), Err(Refusal::Late));
        assert_eq!(check(&ok, &expect(None, 10)), Err(Refusal::Late));
        let other_round = report(6, 5, vec![0.0; 3]);
        assert_eq!(
            check(&other_round, &expect(Some(&round), 10)),
            Err(Refusal::Late)
        );
        let one_behind = report(7, 4, vec![0.0; 3]);
        assert_eq!(check(&one_behind, &expect(Some(&round), 10)), Ok(()));
        let two_behind = report(7, 3, vec![0.0; 3]);
        assert_eq!(
            check(&two_behind, &expect(Some(&round), 10)),
            Err(Refusal::Stale)
        );
        let future = report(7, 9, vec![0.0; 3]);
        assert_eq!(
            check(&future, &expect(Some(&round), 10)),
            Err(Refusal::UnknownVersion)
        );
        let short = report(7, 5, vec![0.0; 2]);
        assert_eq!(
            check(&short, &expect(Some(&round), 10)),
            Err(Refusal::WrongShape)
        );
        let nan = report(7, 5, vec![0.0, f32::NAN, 0.0]);
        assert_eq!(
            check(&nan, &expect(Some(&round), 10)),
            Err(Refusal::NonFinite)
        );
        let inf = report(7, 5, vec![f32::INFINITY, 0.0, 0.0]);
        assert_eq!(
            check(&inf, &expect(Some(&round), 10)),
            Err(Refusal::NonFinite)
        );
        let empty = GradientReport {
            samples: 0,
            ..ok.clone()
        };
        assert_eq!(
            check(&empty, &expect(Some(&round), 10)),
            Err(Refusal::Empty)
        );
    }
}
