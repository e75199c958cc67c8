//! The console's `Learning` service: the model registry and the training rounds, read-only.
//! Registered by the hub with `console::serve_with`, behind `require_console_role`.

use std::sync::Arc;

use synapse_proto::console::v1::{
    GetModelRequest, ListModelsRequest, ListModelsResponse, ListRoundsRequest, ListRoundsResponse,
    ModelVersion, Round, learning_server::Learning, learning_server::LearningServer,
};
use tonic::{Request, Response, Status};

use super::{
    Federation,
    rounds::{RoundRecord, RoundState},
};
use crate::models::ModelRecord;

/// The service over the hub's federation.
pub struct LearningService {
    federation: Arc<Federation>,
}

impl LearningService {
    pub fn new(federation: Arc<Federation>) -> Self {
        Self { federation }
    }

    /// The service wrapped for the console: operators only.
    pub fn routes(federation: Arc<Federation>) -> OperatorOnly {
        LearningServer::with_interceptor(
            Self::new(federation),
            crate::console::require_console_role,
        )
    }
}

/// The interceptor every console service sits behind.
type Interceptor = fn(Request<()>) -> Result<Request<()>, Status>;

/// The `Learning` service behind [`crate::console::require_console_role`].
pub type OperatorOnly =
    tonic::service::interceptor::InterceptedService<LearningServer<LearningService>, Interceptor>;

fn internal(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "learning console read failed");
    Status::internal(e.to_string())
}

fn model(record: ModelRecord) -> ModelVersion {
    ModelVersion {
        version: record.version,
        sha256: record.sha256,
        parent: record.parent,
        round: record.round,
        training_loss: record.training_loss.unwrap_or(f64::NAN),
        metrics: record.metrics.into_iter().collect(),
        created_unix_ms: record.created_unix_ms,
        size_bytes: record.size_bytes,
    }
}

fn round(record: RoundRecord) -> Round {
    Round {
        round: record.round,
        model_version: record.model_version,
        state: record.state.name().into(),
        opened_unix_ms: record.opened_unix_ms,
        deadline_unix_ms: record.deadline_unix_ms,
        ended_unix_ms: record.ended_unix_ms,
        invited: record.invited.len() as u32,
        accepted: record.accepted,
        refused: record.refused.into_iter().collect(),
        loss: record.loss,
        produced_version: record.produced_version,
        note: record.note,
    }
}

#[tonic::async_trait]
impl Learning for LearningService {
    async fn list_models(
        &self,
        _: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        let models = self.federation.models().list().map_err(internal)?;
        Ok(Response::new(ListModelsResponse {
            models: models.into_iter().map(model).collect(),
        }))
    }

    async fn get_model(
        &self,
        request: Request<GetModelRequest>,
    ) -> Result<Response<ModelVersion>, Status> {
        let version = request.into_inner().version;
        match self.federation.models().get(version).map_err(internal)? {
            Some(record) => Ok(Response::new(model(record))),
            None => Err(Status::not_found(format!("no model version {version}"))),
        }
    }

    async fn list_rounds(
        &self,
        request: Request<ListRoundsRequest>,
    ) -> Result<Response<ListRoundsResponse>, Status> {
        let limit = match request.into_inner().limit {
            0 => 50,
            n => n as usize,
        };
        let store = self.federation.rounds();
        let mut rounds = Vec::new();
        for record in store.recent(limit).map_err(internal)? {
            let open = record.state == RoundState::Open;
            let number = record.round;
            let mut shown = round(record);
            if open {
                // The record counts at close; an open round shows what is stored so far.
                shown.accepted = store.gradients(number).map_err(internal)?.len() as u32;
            }
            rounds.push(shown);
        }
        Ok(Response::new(ListRoundsResponse { rounds }))
    }
}
