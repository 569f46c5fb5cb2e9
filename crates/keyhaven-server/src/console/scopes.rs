//! Scope suggestions in the key forms: the scopes already used in the organization (on
//! its keys and in its custom roles) as checkboxes beside the Scopes field. A checked
//! one is sent as one more `scopes` value, which the form reads together with the
//! typed list, so no JavaScript is needed.

use maud::{html, Markup};

use super::auth::Console;
use super::forms::{field, text_input, FieldErrors, FormData};
use crate::app::AppState;

/// Most suggestions a form shows.
const SHOWN: usize = 40;

/// The scopes in use that `current` does not hold yet (none when they cannot be read:
/// suggestions are a convenience, never a reason for a form to fail).
pub async fn suggestions(state: &AppState, c: &Console, current: &[String]) -> Vec<String> {
    match state.service.scopes_in_use(&c.caller).await {
        Ok(all) => all
            .into_iter()
            .filter(|s| !current.contains(s))
            .take(SHOWN)
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the scopes in use for the key form");
            Vec::new()
        }
    }
}

/// The Scopes field (comma-separated text, `hint` under it) with `suggested` as
/// checkboxes named `scopes` under it.
pub fn scopes_field(
    form: &FormData,
    errors: &FieldErrors,
    hint: &str,
    suggested: &[String],
) -> Markup {
    html! {
        (field("Scopes", "scopes", errors, Some(hint), text_input("scopes", &form.list("scopes").join(", "), "text", false)))
        @if !suggested.is_empty() {
            fieldset class="scope-suggestions" id="scope-suggestions" {
                legend class="small muted" { "Add scopes already used in your organization" }
                div class="chip-checks" {
                    @for s in suggested {
                        label class="chip-check" {
                            input type="checkbox" name="scopes" value=(s);
                            span { (s) }
                        }
                    }
                }
            }
        }
    }
}
