//! Regenerates the derived observed fixtures from `fixtures/observed/fresh.json`
//! by simulating apply. Run with `MVM_REGEN_FIXTURES=1 cargo test --test
//! fixtures_gen`; without it, checks that the committed fixtures are what
//! the generator would write, so they cannot silently rot.

use mvm::observed::Observed;
use mvm::plan::{PlanOptions, plan, simulate};
use mvm::spec::{self, NodeConfig};
use std::path::Path;

fn converged(desired: &str, fresh: &Observed) -> Observed {
    let node = NodeConfig::default_config();
    let d = spec::parse_desired(
        Path::new(desired),
        &std::fs::read_to_string(desired).unwrap(),
        &node,
    )
    .unwrap();
    let p = plan(&d, &node, fresh, PlanOptions::default()).unwrap();
    simulate::apply_to(&p, &node, fresh)
}

#[test]
fn converged_fixture_is_current() {
    let fresh: Observed =
        serde_json::from_str(&std::fs::read_to_string("fixtures/observed/fresh.json").unwrap())
            .unwrap();
    let obs = converged("fixtures/desired/example.json", &fresh);
    let text = serde_json::to_string_pretty(&obs).unwrap() + "\n";
    let path = "fixtures/observed/converged.json";
    if std::env::var_os("MVM_REGEN_FIXTURES").is_some() {
        std::fs::write(path, &text).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        text,
        "{path} is stale: rerun with MVM_REGEN_FIXTURES=1"
    );
}
