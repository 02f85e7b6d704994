//! The dependency graph of a plan's resources (edges run from a dependency
//! to its dependent) and its deterministic topological order.

use super::PlanError;
use crate::resources::ResourceAddr;
use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::HashMap;

pub struct ResourceGraph {
    pub graph: DiGraph<ResourceAddr, ()>,
    index: HashMap<ResourceAddr, NodeIndex>,
}

impl ResourceGraph {
    /// Builds the graph from each resource's dependencies. Node `i` is the
    /// `i`-th item, so callers can index their own slices by node index; a dependency that
    /// is not itself in the list is ignored (it exists and is unchanged, or
    /// is not part of this node).
    pub fn new<'a>(
        nodes: impl Iterator<Item = (&'a ResourceAddr, &'a [ResourceAddr])> + Clone,
    ) -> Self {
        let mut graph = DiGraph::new();
        let mut index = HashMap::new();
        for (addr, _) in nodes.clone() {
            index.insert(addr.clone(), graph.add_node(addr.clone()));
        }
        for (addr, deps) in nodes {
            let to = index[addr];
            for d in deps {
                if let Some(&from) = index.get(d) {
                    graph.add_edge(from, to, ());
                }
            }
        }
        Self { graph, index }
    }

    pub fn index(&self, addr: &ResourceAddr) -> Option<NodeIndex> {
        self.index.get(addr).copied()
    }

    /// Addresses in dependency order, or the cycle that prevents one.
    /// Creates walk it forwards; deletes walk it backwards.
    pub fn topo_order(&self) -> Result<Vec<ResourceAddr>, PlanError> {
        match toposort(&self.graph, None) {
            Ok(order) => Ok(order.into_iter().map(|i| self.graph[i].clone()).collect()),
            Err(_) => Err(PlanError::Cycle(self.describe_cycle())),
        }
    }

    /// A readable cycle: `a -> b -> a`.
    fn describe_cycle(&self) -> String {
        let scc = tarjan_scc(&self.graph)
            .into_iter()
            .find(|c| c.len() > 1 || c.iter().any(|&n| self.graph.contains_edge(n, n)))
            .unwrap_or_default();
        let mut names: Vec<String> = scc.iter().map(|&i| self.graph[i].to_string()).collect();
        names.sort();
        if let Some(first) = names.first().cloned() {
            names.push(first);
        }
        names.join(" -> ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycle_is_named() {
        let a: ResourceAddr = "node.bridge".parse().unwrap();
        let b: ResourceAddr = "tenant.x.tap".parse().unwrap();
        let deps_a = [b.clone()];
        let deps_b = [a.clone()];
        let nodes = [(&a, &deps_a[..]), (&b, &deps_b[..])];
        let g = ResourceGraph::new(nodes.iter().copied());
        let err = g.topo_order().unwrap_err().to_string();
        assert_eq!(
            err,
            "the resource graph has a dependency cycle: node.bridge -> tenant.x.tap -> node.bridge"
        );
    }
}
