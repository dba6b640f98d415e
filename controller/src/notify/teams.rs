//! Microsoft Teams workflow webhook body: an Adaptive Card 1.4 inside a `message` attachment,
//! the shape the "Post to a channel when a webhook request is received" workflow accepts.

use serde_json::{Value, json};

use super::render::Rendered;

/// The card's accent for the title.
fn color(r: &Rendered) -> &'static str {
    if r.resolved {
        return "Good";
    }
    match r.severity {
        "critical" => "Attention",
        "warning" => "Warning",
        _ => "Accent",
    }
}

/// The JSON body for one message.
pub fn body(r: &Rendered) -> Value {
    let mut card = vec![
        json!({"type": "TextBlock", "text": r.title, "size": "Large", "weight": "Bolder", "color": color(r), "wrap": true}),
        json!({"type": "TextBlock", "text": r.happened, "wrap": true}),
    ];
    if let Some(why) = &r.why {
        card.push(json!({"type": "TextBlock", "text": format!("Why: {why}"), "isSubtle": true, "size": "Small", "wrap": true}));
    }
    card.push(json!({"type": "TextBlock", "text": "What sitewarden did", "weight": "Bolder", "wrap": true}));
    card.push(json!({"type": "TextBlock", "text": r.did, "wrap": true}));
    if let Some(cmd) = &r.command {
        card.push(json!({"type": "TextBlock", "text": "To act", "weight": "Bolder", "wrap": true}));
        card.push(json!({"type": "TextBlock", "text": cmd, "fontType": "Monospace", "wrap": true}));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "msteams": {"width": "Full"},
                "body": card,
            }
        }]
    })
}
