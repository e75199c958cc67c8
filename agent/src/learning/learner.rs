//! The learning task of one agent: reads its control frames (`round_open`, `model_offer`,
//! `model_chunk`), answers rounds through the link, installs verified versions in the shared
//! [`ModelHandle`], and reports each version's fate to the hub.

use synapse_proto::link::v1::{
    GradientReport, ModelChunk, ModelOffer, ModelReport, RoundOpen, frame::Body,
    model_report::Outcome,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{data::TrainingData, download::Download, samples::mean_gradient};
use crate::{
    control::ToHub,
    forecast::neural::{ModelHandle, ServingModel},
};

/// What the learner did with one frame, for logs and tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Answered `round` with a gradient over `samples` pairs (`resent` for a repeated round).
    Answered {
        round: u64,
        samples: u64,
        resent: bool,
    },
    /// Had no data to answer `round` with.
    NoData { round: u64 },
    /// A version is being received.
    Receiving { version: u64 },
    /// `version` is in service.
    Installed { version: u64 },
    /// `version` was refused; the old model stays.
    Refused { version: u64, reason: String },
    /// Nothing to do (a version already in service, a stray chunk, …).
    Ignored,
}

/// One agent's learner.
pub struct Learner<D> {
    model: ModelHandle,
    data: D,
    to_hub: ToHub,
    download: Option<Download>,
    /// The last answer, resent if the hub asks for the same round again (after a reconnect
    /// or a hub restart), so a round is never computed twice on moving data.
    last_answer: Option<GradientReport>,
}

impl<D: TrainingData> Learner<D> {
    pub fn new(model: ModelHandle, data: D, to_hub: ToHub) -> Self {
        Self {
            model,
            data,
            to_hub,
            download: None,
            last_answer: None,
        }
    }

    pub fn model(&self) -> &ModelHandle {
        &self.model
    }

    /// Takes frames until `frames` closes or `shutdown`.
    pub async fn run(mut self, mut frames: mpsc::Receiver<Body>, shutdown: CancellationToken) {
        loop {
            let body = tokio::select! {
                _ = shutdown.cancelled() => return,
                body = frames.recv() => match body {
                    Some(body) => body,
                    None => return,
                },
            };
            let step = self.handle(body);
            tracing::debug!(?step, "learning");
        }
    }

    /// Handles one control frame.
    pub fn handle(&mut self, body: Body) -> Step {
        match body {
            Body::RoundOpen(round) => self.answer(&round),
            Body::ModelOffer(offer) => self.offered(offer),
            Body::ModelChunk(chunk) => self.chunk(chunk),
            _ => Step::Ignored,
        }
    }

    fn send(&self, body: Body) {
        if let Err(e) = self.to_hub.send(body) {
            tracing::warn!("learning: cannot queue a frame for the hub: {e}");
        }
    }

    fn answer(&mut self, round: &RoundOpen) -> Step {
        if let Some(last) = self.last_answer.as_ref().filter(|a| a.round == round.round) {
            let samples = last.samples;
            self.send(Body::GradientReport(last.clone()));
            return Step::Answered {
                round: round.round,
                samples,
                resent: true,
            };
        }
        let model = self.model.current();
        let pairs = self.data.pairs();
        let Some((loss, gradient)) = mean_gradient(&model.mlp, &pairs) else {
            return Step::NoData { round: round.round };
        };
        let report = GradientReport {
            round: round.round,
            model_version: model.version,
            gradient: gradient.iter().map(|g| *g as f32).collect(),
            samples: pairs.len() as u64,
            loss,
        };
        self.last_answer = Some(report.clone());
        self.send(Body::GradientReport(report));
        Step::Answered {
            round: round.round,
            samples: pairs.len() as u64,
            resent: false,
        }
    }

    fn offered(&mut self, offer: ModelOffer) -> Step {
        let serving = self.model.current();
        if offer.version == serving.version && offer.sha256.eq_ignore_ascii_case(&serving.sha256) {
            self.download = None;
            return Step::Ignored;
        }
        let version = offer.version;
        match Download::start(offer) {
            Ok(download) => {
                self.download = Some(download);
                Step::Receiving { version }
            }
            Err(e) => self.refuse(version, e.to_string()),
        }
    }

    fn chunk(&mut self, chunk: ModelChunk) -> Step {
        let Some(download) = self
            .download
            .as_mut()
            .filter(|d| d.offer.version == chunk.version)
        else {
            return Step::Ignored;
        };
        let version = chunk.version;
        match download.chunk(chunk) {
            Ok(None) => Step::Receiving { version },
            Ok(Some(file)) => {
                self.download = None;
                match ServingModel::load(version, &file) {
                    Ok(model) => {
                        let old = self.model.install(model);
                        tracing::info!(version, replaced = old.version, "model version in service");
                        self.report(version, Outcome::Installed, String::new());
                        Step::Installed { version }
                    }
                    Err(e) => self.refuse(version, e.to_string()),
                }
            }
            Err(e) => {
                self.download = None;
                self.refuse(version, e.to_string())
            }
        }
    }

    fn refuse(&mut self, version: u64, reason: String) -> Step {
        tracing::warn!(version, %reason, "model version refused; the old one stays in service");
        self.report(version, Outcome::Refused, reason.clone());
        Step::Refused { version, reason }
    }

    fn report(&self, version: u64, outcome: Outcome, reason: String) {
        self.send(Body::ModelReport(ModelReport {
            version,
            outcome: outcome as i32,
            reason,
            serving_version: self.model.current().version,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        control::ControlBus,
        forecast::neural::{onnx, serving::sha256_hex, train},
        learning::samples::Pair,
    };

    /// Steady data: a function called 3 times a minute.
    struct Steady;
    impl TrainingData for Steady {
        fn pairs(&mut self) -> Vec<Pair> {
            let counts = vec![3.0; 120];
            crate::learning::samples::pairs_of(&counts, 0, 60..120)
        }
    }

    fn file(steps: usize) -> Vec<u8> {
        onnx::encode(&train::pretrain(&train::PretrainConfig {
            steps,
            ..Default::default()
        }))
    }

    fn learner() -> (Learner<Steady>, ControlBus) {
        let bus = ControlBus::default();
        let handle = ModelHandle::new(ServingModel::load(1, &file(5)).unwrap());
        (Learner::new(handle, Steady, bus.to_hub()), bus)
    }

    fn offer(version: u64, file: &[u8], sha256: String, chunk: usize) -> Vec<Body> {
        let chunks: Vec<&[u8]> = file.chunks(chunk).collect();
        let mut frames = vec![Body::ModelOffer(ModelOffer {
            version,
            sha256,
            size_bytes: file.len() as u64,
            chunks: chunks.len() as u32,
            parent: 1,
            round: 1,
        })];
        frames.extend(chunks.iter().enumerate().map(|(i, data)| {
            Body::ModelChunk(ModelChunk {
                version,
                index: i as u32,
                data: data.to_vec(),
            })
        }));
        frames
    }

    fn sent(bus: ControlBus) -> Vec<Body> {
        let (mut channels, _) = bus.into_link();
        let mut out = Vec::new();
        while let Ok(body) = channels.to_hub.try_recv() {
            out.push(body);
        }
        out
    }

    #[test]
    fn a_round_is_answered_with_the_gradient_on_the_serving_version_once() {
        let (mut learner, bus) = learner();
        let round = Body::RoundOpen(RoundOpen {
            round: 4,
            model_version: 1,
            ..Default::default()
        });
        let first = learner.handle(round.clone());
        assert_eq!(
            first,
            Step::Answered {
                round: 4,
                samples: 60,
                resent: false
            }
        );
        let again = learner.handle(round);
        assert!(matches!(again, Step::Answered { resent: true, .. }));
        let frames = sent(bus);
        assert_eq!(frames.len(), 2);
        let Body::GradientReport(report) = &frames[0] else {
            panic!("{frames:?}")
        };
        assert_eq!((report.model_version, report.samples), (1, 60));
        assert_eq!(
            report.gradient.len(),
            crate::forecast::neural::mlp::PARAMETERS
        );
        assert_eq!(
            frames[0], frames[1],
            "the same answer, not a second computation"
        );
    }

    #[test]
    fn a_verified_version_is_installed_and_reported() {
        let (mut learner, bus) = learner();
        let new = file(40);
        let mut last = Step::Ignored;
        for frame in offer(2, &new, sha256_hex(&new), 700) {
            last = learner.handle(frame);
        }
        assert_eq!(last, Step::Installed { version: 2 });
        assert_eq!(learner.model().current().version, 2);
        let frames = sent(bus);
        assert!(
            matches!(
                &frames[..],
                [Body::ModelReport(ModelReport { version: 2, outcome, serving_version: 2, .. })]
                    if *outcome == Outcome::Installed as i32
            ),
            "{frames:?}"
        );
    }

    #[test]
    fn a_hash_mismatch_or_a_corrupt_file_is_refused_and_the_old_model_stays() {
        let (mut learner, bus) = learner();
        let before = learner.model().current().sha256.clone();
        // The offer announces the hash of another file.
        let new = file(40);
        let mut last = Step::Ignored;
        for frame in offer(2, &new, sha256_hex(b"another file"), 700) {
            last = learner.handle(frame);
        }
        assert!(
            matches!(&last, Step::Refused { version: 2, reason } if reason.contains("SHA-256 mismatch")),
            "{last:?}"
        );
        // A corrupt file whose hash matches what was sent (corrupted before hashing).
        let mut corrupt = new.clone();
        corrupt.truncate(new.len() - 100);
        for frame in offer(3, &corrupt, sha256_hex(&corrupt), 700) {
            last = learner.handle(frame);
        }
        assert!(
            matches!(&last, Step::Refused { version: 3, .. }),
            "{last:?}"
        );
        let serving = learner.model().current();
        assert_eq!((serving.version, &serving.sha256), (1, &before));
        let reports: Vec<_> = sent(bus)
            .into_iter()
            .filter_map(|b| match b {
                Body::ModelReport(r) => Some((r.version, r.outcome, r.serving_version)),
                _ => None,
            })
            .collect();
        let refused = Outcome::Refused as i32;
        assert_eq!(reports, vec![(2, refused, 1), (3, refused, 1)]);
    }
}
