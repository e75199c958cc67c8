//! The `Console` service: read-only views of the registry, watch streams and the audit log.

use std::{pin::Pin, sync::Arc};

use futures::Stream;
use synapse_proto::console::v1::{
    Agent, FunctionStatsRequest, FunctionStatsResponse, GetAgentRequest, ListAgentsRequest,
    ListAgentsResponse, ListAuditRequest, ListAuditResponse, ListFunctionsRequest,
    ListFunctionsResponse, WatchEvent, WatchRequest, console_server::Console,
};
use tonic::{Request, Response, Status};

use super::{audit::AuditLog, watch::Caller};
use crate::{
    certs::revocation::Revocations,
    registry::{Registry, RegistryError},
};

pub struct ConsoleService {
    registry: Registry,
    audit: Arc<AuditLog>,
    revocations: Revocations,
}

impl ConsoleService {
    pub fn new(registry: Registry, audit: Arc<AuditLog>, revocations: Revocations) -> Self {
        Self {
            registry,
            audit,
            revocations,
        }
    }
}

pub(super) fn internal(e: RegistryError) -> Status {
    tracing::error!(error = %e, "console read failed");
    Status::internal(e.to_string())
}

#[tonic::async_trait]
impl Console for ConsoleService {
    async fn list_agents(
        &self,
        _: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        let agents = self.registry.agents().map_err(internal)?;
        Ok(Response::new(ListAgentsResponse { agents }))
    }

    async fn get_agent(
        &self,
        request: Request<GetAgentRequest>,
    ) -> Result<Response<Agent>, Status> {
        let id = request.into_inner().agent_id;
        match self.registry.agent(&id).map_err(internal)? {
            Some(agent) => Ok(Response::new(agent)),
            None => Err(Status::not_found(format!("no agent {id:?}"))),
        }
    }

    async fn list_functions(
        &self,
        _: Request<ListFunctionsRequest>,
    ) -> Result<Response<ListFunctionsResponse>, Status> {
        let functions = self.registry.functions().map_err(internal)?;
        Ok(Response::new(ListFunctionsResponse { functions }))
    }

    async fn function_stats(
        &self,
        request: Request<FunctionStatsRequest>,
    ) -> Result<Response<FunctionStatsResponse>, Status> {
        let function = request.into_inner().function;
        match self.registry.function_stats(&function).map_err(internal)? {
            Some(stats) => Ok(Response::new(stats)),
            None => Err(Status::not_found(format!("no function {function:?}"))),
        }
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send + 'static>>;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let leaf = request
            .peer_certs()
            .and_then(|certs| certs.first().map(|c| c.to_vec()))
            .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
        let caller = Caller {
            revocations: self.revocations.clone(),
            leaf,
        };
        let stream = super::watch::events(self.registry.clone(), request.into_inner(), caller)?;
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_audit(
        &self,
        request: Request<ListAuditRequest>,
    ) -> Result<Response<ListAuditResponse>, Status> {
        let limit = request.into_inner().limit as usize;
        let audit = self.audit.clone();
        let entries = tokio::task::spawn_blocking(move || audit.recent(limit))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| {
                tracing::error!(error = %e, "audit read failed");
                Status::internal(e.to_string())
            })?;
        Ok(Response::new(ListAuditResponse { entries }))
    }
}
