//! The key page's "Recent verifications": the newest answers for the key across every
//! node (time, result, client address, tags), as the analytics flush wrote them.

use keyhaven_store::RecentVerification;
use maud::{html, Markup};

use super::analytics::{code_colour, code_label};
use super::widgets;

/// The card listing `rows` (newest first).
pub fn recent_card(rows: &[RecentVerification]) -> Markup {
    html! {
        section class="card" id="recent-verifications" {
            div class="section-head" {
                h2 { "Recent verifications" }
                a class="btn btn-small btn-link" href="/analytics" { "Analytics" }
            }
            @if rows.is_empty() {
                p class="muted" id="recent-empty" {
                    "No verifications yet. Each one shows here a few seconds after it is answered, the newest "
                    (keyhaven_service::verify::recent::RECENT_PER_KEY) " kept."
                }
            } @else {
                div class="table-wrap recent-wrap" {
                    table class="table recent-table" {
                        caption class="sr-caption" { "The newest verifications of this key, newest first" }
                        thead { tr { th scope="col" { "Time" } th scope="col" { "Result" } th scope="col" { "Client IP" } th scope="col" { "Tags" } } }
                        tbody {
                            @for r in rows {
                                tr data-code=(r.code) {
                                    td class="nowrap" data-label="Time" { (widgets::time(&r.at)) }
                                    td class="nowrap" data-label="Result" title=(r.code) {
                                        (widgets::raw(format!("<svg class=\"swatch-svg\" width=\"10\" height=\"10\" aria-hidden=\"true\"><rect width=\"10\" height=\"10\" rx=\"2\" fill=\"{}\"/></svg>", code_colour(&r.code))))
                                        " " (code_label(&r.code))
                                    }
                                    td data-label="Client IP" { @match &r.ip { Some(ip) => code class="ip" { (ip) }, None => span class="muted" { "—" } } }
                                    td data-label="Tags" {
                                        @if r.tags.is_empty() { span class="muted" { "—" } }
                                        @for t in &r.tags { span class="chip chip-tag" { (t) } " " }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
