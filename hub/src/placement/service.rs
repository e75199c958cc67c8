//! `synapse.console.v1.Placement`: the plan in force, why a function is where it is, and
//! earlier plans.

use synapse_proto::console::v1::{
    ExplainPlacementRequest, PlacedFunction, PlacedHost, PlacementExplanation,
    PlacementHistoryRequest, PlacementHistoryResponse, PlacementPlan, ShowPlacementRequest,
    TierCost, placement_server,
};
use tonic::{Request, Response, Status};

use super::{
    Placement, Plan,
    inputs::{Inputs, tier_name},
    objective::{cold_cost, host_loads, warm_terms},
};

/// The service behind the console's operator check.
pub type OperatorOnly = tonic::service::interceptor::InterceptedService<
    placement_server::PlacementServer<PlacementService>,
    fn(Request<()>) -> Result<Request<()>, Status>,
>;

/// Plans listed by `history` when the request names no limit.
const DEFAULT_HISTORY: u32 = 20;

pub struct PlacementService {
    placement: Placement,
}

impl PlacementService {
    pub fn new(placement: Placement) -> Self {
        Self { placement }
    }

    /// The service as the console serves it: operators only.
    pub fn server(placement: Placement) -> OperatorOnly {
        placement_server::PlacementServer::with_interceptor(
            Self::new(placement),
            crate::console::require_console_role,
        )
    }
}

fn placed(name: &str, p: &super::Placed, plan: &Plan) -> PlacedFunction {
    PlacedFunction {
        function: name.to_owned(),
        hosts: p
            .hosts
            .iter()
            .map(|(agent, share)| PlacedHost {
                agent_id: agent.clone(),
                tier: plan.hosts.get(agent).map_or(0, |h| h.tier),
                share: *share,
            })
            .collect(),
        objective: p.objective,
        moved: p.moved,
        for_capacity: p.for_capacity,
    }
}

pub fn to_proto(plan: &Plan) -> PlacementPlan {
    PlacementPlan {
        version: plan.version,
        created_unix_ms: plan.created_unix_ms,
        reason: plan.reason.clone(),
        objective: plan.objective,
        moved: plan.moved,
        held_back: plan.held_back,
        over_cap: plan.over_cap,
        solve_ms: plan.solve_ms,
        functions: plan
            .functions
            .iter()
            .map(|(name, p)| placed(name, p, plan))
            .collect(),
    }
}

/// Every tier's best host for `function` under `inputs`, with the terms of the objective.
pub fn explain(plan: &Plan, inputs: &Inputs, function: &str) -> Option<PlacementExplanation> {
    let p = plan.functions.get(function)?;
    let index = inputs.functions.iter().position(|f| f.name == function)?;
    let f = &inputs.functions[index];
    let loads = host_loads(inputs, &plan.shares_in(inputs));
    let mut tiers = Vec::new();
    for tier in [1, 2, 3] {
        let best = (0..inputs.hosts.len())
            .filter(|&h| inputs.hosts[h].tier == tier)
            .map(|h| (warm_terms(inputs, f, h), h))
            .min_by(|a, b| a.0.total().total_cmp(&b.0.total()));
        if let Some((terms, h)) = best {
            let host = &inputs.hosts[h];
            tiers.push(TierCost {
                tier,
                agent_id: host.agent.clone(),
                user_latency: terms.user_latency,
                resource_utilization: terms.resource_utilization,
                cost: terms.cost,
                total: terms.total(),
                free_bytes: (host.pool_memory_bytes as f64 - loads[h]).max(0.0) as u64,
            });
        }
    }
    let cold_total = cold_cost(inputs, f);
    let here = if p.hosts.is_empty() {
        "warm nowhere (cold where invoked)".to_owned()
    } else {
        p.hosts
            .iter()
            .map(|(a, x)| {
                let tier = plan.hosts.get(a).map_or(0, |h| h.tier);
                format!("{a} ({}) {:.0}%", tier_name(tier), x * 100.0)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cheapest = tiers
        .iter()
        .min_by(|a, b| a.total.total_cmp(&b.total))
        .map(|t| {
            format!(
                "{} on {} at {:.6}/s",
                tier_name(t.tier),
                t.agent_id,
                t.total
            )
        })
        .unwrap_or_else(|| "no host".into());
    let moved = match (p.moved, p.for_capacity) {
        (true, true) if plan.over_cap > 0 => format!(
            "; moved in this plan to make room on a full host (capacity forced {} moves over the cap)",
            plan.over_cap
        ),
        (true, true) => "; moved in this plan to make room on a full host".to_owned(),
        (true, false) => "; moved in this plan".to_owned(),
        (false, _) => String::new(),
    };
    let summary = format!(
        "{function}: {here}; objective {:.6}/s; cheapest tier alone: {cheapest}; cold everywhere {cold_total:.6}/s{moved}",
        p.objective,
    );
    Some(PlacementExplanation {
        version: plan.version,
        placed: Some(placed(function, p, plan)),
        forecast_per_s: f.total_demand(),
        execution_s: f.execution_s,
        memory_bytes: f.memory_bytes,
        cold_start_s: f.cold_start_s,
        instances: f.instances(),
        tiers,
        cold_total,
        summary,
    })
}

fn internal(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "placement console read failed");
    Status::internal(e.to_string())
}

#[tonic::async_trait]
impl placement_server::Placement for PlacementService {
    async fn show(
        &self,
        _: Request<ShowPlacementRequest>,
    ) -> Result<Response<PlacementPlan>, Status> {
        match self.placement.in_force().0 {
            Some(plan) => Ok(Response::new(to_proto(&plan))),
            None => Err(Status::not_found(
                "no placement plan yet: no agent has reported demand",
            )),
        }
    }

    async fn explain(
        &self,
        request: Request<ExplainPlacementRequest>,
    ) -> Result<Response<PlacementExplanation>, Status> {
        let function = request.into_inner().function;
        let (Some(plan), inputs) = self.placement.in_force() else {
            return Err(Status::not_found("no placement plan yet"));
        };
        if !plan.functions.contains_key(&function) {
            return Err(Status::not_found(format!(
                "function {function:?} is not in placement plan {}",
                plan.version
            )));
        }
        let Some(inputs) = inputs else {
            return Err(Status::unavailable(
                "the plan in force predates this hub's start; its inputs come with the next plan",
            ));
        };
        explain(&plan, &inputs, &function)
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("function {function:?} has no inputs")))
    }

    async fn history(
        &self,
        request: Request<PlacementHistoryRequest>,
    ) -> Result<Response<PlacementHistoryResponse>, Status> {
        let limit = match request.into_inner().limit {
            0 => DEFAULT_HISTORY,
            n => n,
        };
        let plans = self
            .placement
            .store()
            .history(limit as usize)
            .map_err(internal)?
            .iter()
            .map(|plan| PlacementPlan {
                functions: Vec::new(),
                ..to_proto(plan)
            })
            .collect();
        Ok(Response::new(PlacementHistoryResponse { plans }))
    }
}
