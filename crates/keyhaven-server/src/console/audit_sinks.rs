//! Audit streaming in the console: the sinks of the organization (kind, target, lag,
//! last error) on the audit log page, a page to add one and a button to remove one.
//! Shown only with audit.manage.

use axum::extract::{Path, State};
use keyhaven_core::permission::Permission;
use keyhaven_service::audit_sinks::{CreateAuditSink, SinkFields};
use keyhaven_store::Page;
use maud::{html, Markup};

use super::auth::Console;
use super::errors::{self, PageError, PageResult};
use super::forms::{self, csrf, field, form_error, FieldErrors, FormData};
use super::layout::{self, header, layout};
use super::widgets::{self, badge};
use crate::app::AppState;

/// Where the activity tab is.
const ACTIVITY: &str = "/settings/api-access?tab=activity";

/// The "Audit streaming" section of the activity tab (empty without audit.manage).
pub async fn section(state: &AppState, c: &Console) -> Result<Markup, PageError> {
    if !c.can(Permission::AuditManage) {
        return Ok(html! {});
    }
    let sinks = state
        .service
        .list_audit_sinks(
            &c.caller,
            &Page {
                limit: 100,
                cursor: None,
            },
        )
        .await?
        .items;
    Ok(html! {
        section class="card" id="audit-sinks" aria-labelledby="audit-sinks-title" {
            div class="section-head" {
                h2 id="audit-sinks-title" { "Audit streaming" }
                a class="btn btn-small" href="/settings/audit-sinks/new" { "Add sink" }
            }
            @if sinks.is_empty() {
                p class="muted" { "No sinks: the audit log stays in Keyhaven only. A sink streams every entry, in chain order, to your SIEM over HTTP or syslog, or to a file." }
            } @else {
                div class="table-wrap" {
                    table class="table" id="audit-sinks-table" {
                        thead { tr { th { "Kind" } th { "Target" } th { "Status" } th { "Lag" } th { "Last delivered" } th { "Last error" } th { span class="sr-only" { "Actions" } } } }
                        tbody {
                            @for st in &sinks {
                                @let s = &st.sink;
                                tr data-id=(s.id) {
                                    td { code { (s.target.kind()) } }
                                    td { code { (s.target.describe()) } @if !s.description.is_empty() { div class="muted small" { (s.description) } } }
                                    td { @if s.enabled { (badge("active")) } @else { (badge("inactive")) } }
                                    td class="lag" { (st.lag) " " @if st.lag == 1 { "entry" } @else { "entries" } }
                                    td { @match &s.last_delivered_at { Some(t) => (widgets::time(t)), None => span class="muted" { "never" } } }
                                    td class="last-error" {
                                        @match &s.last_error {
                                            Some(e) => { (e) @if let Some(t) = &s.last_error_at { div class="muted small" { (widgets::time(t)) } } }
                                            None => span class="muted" { "—" }
                                        }
                                    }
                                    td {
                                        form method="post" action={ "/settings/audit-sinks/" (s.id) "/delete" } class="inline"
                                            data-confirm={ "Remove the sink " (s.target.describe()) "? What it delivered stays where it went." } data-confirm-label="Remove" {
                                            (csrf(c))
                                            button class="btn btn-small btn-danger-outline" type="submit" aria-label={ "Remove the sink " (s.target.describe()) } { "Remove" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

fn new_page(c: &Console, form: &FormData, errors: &FieldErrors) -> PageResult {
    c.require(Permission::AuditManage)?;
    let kind = match form.get("kind") {
        "" => "http",
        k => k,
    };
    let transport = form.get("transport");
    let body = html! {
        nav class="crumbs" aria-label="Breadcrumb" { a href=(ACTIVITY) { "Audit log" } " / " span { "Add audit sink" } }
        (header("Add audit sink", Some("Every audit entry is delivered at least once, in chain order, with its prev_hash and hash."), html! {}))
        div class="card" {
            (form_error(errors))
            form method="post" action="/settings/audit-sinks" class="stack" novalidate {
                (csrf(c))
                div class={ "field" @if errors.get("kind").is_some() { " has-error" } } {
                    label for="f-kind" { "Kind *" }
                    select id="f-kind" name="kind" {
                        option value="http" selected[kind == "http"] { "HTTP: signed JSON batches" }
                        option value="syslog" selected[kind == "syslog"] { "Syslog (RFC 5424)" }
                        option value="file" selected[kind == "file"] { "File (JSON Lines)" }
                    }
                    @if let Some(e) = errors.get("kind") { div class="field-error" role="alert" { (e) } }
                }
                fieldset {
                    legend { "HTTP" }
                    (field("URL", "url", errors, Some("Batches of up to 1,000 entries are POSTed here, signed with the organization's shared secret."), forms::text_input("url", form.get("url"), "url", false)))
                }
                fieldset {
                    legend { "Syslog" }
                    (field("Host", "host", errors, None, forms::text_input("host", form.get("host"), "text", false)))
                    (field("Port", "port", errors, Some("Default 514."), forms::number_input("port", form.get("port"))))
                    div class="field" {
                        label for="f-transport" { "Transport" }
                        select id="f-transport" name="transport" {
                            option value="tcp" selected[transport != "udp"] { "TCP" }
                            option value="udp" selected[transport == "udp"] { "UDP" }
                        }
                    }
                }
                fieldset {
                    legend { "File" }
                    (field("Path", "path", errors, Some("Relative, under the data directory's audit folder; rotated at 10 MiB."), forms::text_input("path", form.get("path"), "text", false)))
                }
                (field("Description", "description", errors, None, forms::text_input("description", form.get("description"), "text", false)))
                div class="field" {
                    label class="check" {
                        input id="f-start" type="checkbox" name="start" value="now" checked[form.get("start") == "now"];
                        " Start now (leave unticked to deliver the whole log from its first entry)"
                    }
                }
                div class="form-actions" {
                    button class="btn btn-primary" type="submit" { "Add sink" }
                    a class="btn btn-link" href=(ACTIVITY) { "Cancel" }
                }
            }
        }
    };
    forms::form_page(errors, layout(c, "Add audit sink", "audit", body))
}

/// `GET /settings/audit-sinks/new`.
pub async fn new_sink_page(c: Console) -> PageResult {
    new_page(&c, &FormData::default(), &FieldErrors::default())
}

/// `POST /settings/audit-sinks`: only the fields of the chosen kind are sent on.
pub async fn create_sink(State(state): State<AppState>, c: Console, form: FormData) -> PageResult {
    c.check_csrf(&form)?;
    let kind = form.get("kind").to_string();
    let mut fields = SinkFields::default();
    let mut errors = FieldErrors::default();
    match kind.as_str() {
        "http" => fields.url = Some(form.get("url").trim().to_string()),
        "syslog" => {
            fields.host = Some(form.get("host").trim().to_string());
            let port = form.get("port").trim();
            if !port.is_empty() {
                match port.parse::<i64>() {
                    Ok(p) => fields.port = Some(p),
                    Err(_) => errors.add("port", "Enter a port number between 1 and 65535."),
                }
            }
            fields.transport = form.opt("transport");
        }
        "file" => fields.path = Some(form.get("path").trim().to_string()),
        _ => {}
    }
    if !errors.is_empty() {
        return new_page(&c, &form, &errors);
    }
    let input = CreateAuditSink {
        kind,
        fields,
        description: form.opt("description"),
        enabled: Some(true),
        start: Some(
            if form.get("start") == "now" {
                "now"
            } else {
                "beginning"
            }
            .into(),
        ),
    };
    match state.service.create_audit_sink(&c.caller, input).await {
        Ok(_) => Ok(layout::see_other(&format!("{ACTIVITY}#audit-sinks"))),
        Err(e) => {
            let errors = FieldErrors::from_service(e, &[])?;
            new_page(&c, &form, &errors)
        }
    }
}

/// `POST /settings/audit-sinks/{id}/delete`.
pub async fn delete_sink(
    State(state): State<AppState>,
    c: Console,
    Path(id): Path<String>,
    form: FormData,
) -> PageResult {
    c.check_csrf(&form)?;
    let id = errors::path_id(&id, "audit sink")?;
    state.service.delete_audit_sink(&c.caller, &id).await?;
    Ok(layout::see_other(&format!("{ACTIVITY}#audit-sinks")))
}
