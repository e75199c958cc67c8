//! The exact optimum of the placement problem (see [`super::objective`]) as a min-cost flow:
//! source → function (capacity `R_f`) → host (unit cost `k_fh/R_f`) or cold (`k_f0/R_f`) →
//! sink (hosts capacity `C_h`, cold unbounded), by successive shortest paths with
//! Bellman-Ford. Exact for the continuous shares, and slow — `O(paths · F · H)` — so it is
//! the yardstick of [`super::solver`] on small instances, not the planner.

use super::{
    inputs::Inputs,
    objective::{self, Shares, cold_cost, warm_cost},
};
use crate::placement::solver::Solution;

struct Edge {
    to: usize,
    capacity: f64,
    cost: f64,
}

struct Graph {
    edges: Vec<Edge>,
    out: Vec<Vec<usize>>,
}

impl Graph {
    fn new(nodes: usize) -> Self {
        Self {
            edges: Vec::new(),
            out: vec![Vec::new(); nodes],
        }
    }

    /// Adds an arc and its residual twin; returns the arc's index.
    fn arc(&mut self, from: usize, to: usize, capacity: f64, cost: f64) -> usize {
        let id = self.edges.len();
        self.edges.push(Edge { to, capacity, cost });
        self.edges.push(Edge {
            to: from,
            capacity: 0.0,
            cost: -cost,
        });
        self.out[from].push(id);
        self.out[to].push(id + 1);
        id
    }
}

const EPS: f64 = 1e-9;

/// Solves `inputs` exactly.
pub fn solve(inputs: &Inputs) -> Solution {
    let (nf, nh) = (inputs.functions.len(), inputs.hosts.len());
    let source = 0;
    let function_node = |f: usize| 1 + f;
    let host_node = |h: usize| 1 + nf + h;
    let cold = 1 + nf + nh;
    let sink = cold + 1;
    let mut g = Graph::new(sink + 1);
    let mut total = 0.0;
    let mut warm_arcs: Vec<Vec<(usize, usize)>> = vec![Vec::new(); nf];
    // Flows in GB, so that costs per unit stay far from the float tolerances.
    for (i, f) in inputs.functions.iter().enumerate() {
        let gb = f.pool_bytes() / 1e9;
        total += gb;
        g.arc(source, function_node(i), gb, 0.0);
        for h in (0..nh).filter(|&h| f.runs_on(h)) {
            let cost = warm_cost(inputs, f, h) / gb;
            let arc = g.arc(function_node(i), host_node(h), f64::INFINITY, cost);
            warm_arcs[i].push((h, arc));
        }
        g.arc(
            function_node(i),
            cold,
            f64::INFINITY,
            cold_cost(inputs, f) / gb,
        );
    }
    for (h, host) in inputs.hosts.iter().enumerate() {
        g.arc(host_node(h), sink, host.pool_memory_bytes as f64 / 1e9, 0.0);
    }
    g.arc(cold, sink, f64::INFINITY, 0.0);

    let mut sent = 0.0;
    while sent < total * (1.0 - 1e-12) {
        let Some((path, bottleneck)) = shortest_path(&g, source, sink) else {
            break;
        };
        let push = bottleneck.min(total - sent);
        for &e in &path {
            g.edges[e].capacity -= push;
            g.edges[e ^ 1].capacity += push;
        }
        sent += push;
    }
    let shares: Vec<Shares> = inputs
        .functions
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let gb = f.pool_bytes() / 1e9;
            warm_arcs[i]
                .iter()
                .filter_map(|&(h, arc)| {
                    let flow = g.edges[arc ^ 1].capacity;
                    (flow > EPS * gb).then_some((h, flow / gb))
                })
                .collect()
        })
        .collect();
    let objective = objective::objective(inputs, &shares);
    Solution { shares, objective }
}

/// Cheapest path with room from `source` to `sink` (Bellman-Ford, queue-based), as arc
/// indices, and the room along it.
fn shortest_path(g: &Graph, source: usize, sink: usize) -> Option<(Vec<usize>, f64)> {
    let n = g.out.len();
    let mut dist = vec![f64::INFINITY; n];
    let mut via: Vec<Option<usize>> = vec![None; n];
    let mut queued = vec![false; n];
    let mut queue = std::collections::VecDeque::new();
    dist[source] = 0.0;
    queue.push_back(source);
    queued[source] = true;
    while let Some(u) = queue.pop_front() {
        queued[u] = false;
        for &e in &g.out[u] {
            let edge = &g.edges[e];
            if edge.capacity <= EPS {
                continue;
            }
            let d = dist[u] + edge.cost;
            if d < dist[edge.to] - 1e-12 {
                dist[edge.to] = d;
                via[edge.to] = Some(e);
                if !queued[edge.to] {
                    queued[edge.to] = true;
                    queue.push_back(edge.to);
                }
            }
        }
    }
    if !dist[sink].is_finite() {
        return None;
    }
    let mut path = Vec::new();
    let mut room = f64::INFINITY;
    let mut at = sink;
    while at != source {
        let e = via[at]?;
        path.push(e);
        room = room.min(g.edges[e].capacity);
        at = g.edges[e ^ 1].to;
    }
    Some((path, room))
}
