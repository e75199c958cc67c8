//! Federated learning on the agent: answer the hub's training rounds with the gradient of the
//! neural forecaster's loss on this agent's recent per-minute data, and take the model
//! versions the hub offers — in chunks, SHA-256 verified, loaded with tract, swapped
//! atomically (forecasts in flight finish on the old model). A corrupt file or a hash mismatch
//! is refused, the old model stays in service, and the refusal is reported to the hub.
//!
//! - [`samples`]: training pairs and the mean gradient (pure).
//! - [`data`]: where the pairs come from (live store, replayed trace).
//! - [`download`]: chunked, verified receipt of a version (pure).
//! - [`learner`]: the task that ties them to the control frames.
//! - [`own`]: the agent's own model, restored when a model rollout sends the agent back.

pub mod data;
pub mod download;
pub mod learner;
pub mod own;
pub mod samples;

pub use data::{ReplayedMinutes, StoreMinutes, TrainingData};
pub use learner::Learner;
pub use own::OwnModel;

/// The control-frame kinds the learner takes from the hub (`Body::kind`).
pub const KINDS: &[&str] = &["round_open", "model_offer", "model_chunk"];
