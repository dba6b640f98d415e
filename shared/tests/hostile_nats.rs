//! Property test for the `[nats]` section parser, which takes text from an operator's file:
//! arbitrary text never makes parsing or validation panic (the contract's parsers have theirs
//! in `shared/contract/tests/hostile_input.rs`).

use proptest::prelude::*;
use sitewarden_shared::config::{KeyPath, Source};
use sitewarden_shared::nats::NatsConfig;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn nats_sections_never_panic(text in "[a-z_\\[\\]=\" .{},0-9:/-]{0,160}") {
        #[derive(serde::Deserialize)]
        struct Doc {
            #[serde(default)]
            nats: NatsConfig,
        }
        let src = Source::inline("t.toml", format!("[nats]\n{text}"));
        if let Ok(doc) = src.parse::<Doc>() {
            let _ = doc.nats.validate(&src, &KeyPath::root().key("nats"));
        }
    }
}
