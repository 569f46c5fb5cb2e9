//! Importing keys from another system: paste (or load from a file) JSON Lines of
//! import items, check them — a dry run that writes nothing — then import, with the
//! result of every line. The same items as `POST /api-keys/import` and
//! `keyhaven admin import-keys`.

use axum::extract::State;
use keyhaven_core::permission::Permission;
use keyhaven_core::principal::PrincipalKind;
use keyhaven_service::api_keys::OwnerRef;
use keyhaven_service::import::{ImportItem, MAX_ITEMS};
use maud::{html, Markup};

use super::auth::Console;
use super::errors::PageResult;
use super::forms::{self, csrf, field, form_error, FieldErrors, FormData};
use super::layout::{header, layout};
use super::widgets::badge;
use crate::api::api_keys::import_line;
use crate::app::AppState;

const EXAMPLE: &str = r#"{"name": "acme-prod", "key": "sk_live_…", "external_id": "cus_123"}
{"name": "legacy", "hash": {"algorithm": "pbkdf2_sha256", "value": "pbkdf2_sha256$…", "lookup": {"prefix": "Ab12Cd34"}}}"#;

/// One line's outcome.
struct LineResult {
    line: usize,
    name: String,
    /// `ready` (checked), `imported`, or `error`.
    state: &'static str,
    detail: String,
    id: Option<String>,
}

async fn accounts(
    state: &AppState,
    c: &Console,
) -> Result<Vec<(String, String)>, super::errors::PageError> {
    Ok(super::api_keys::owner_accounts(state, c)
        .await?
        .into_iter()
        .map(|sa| (sa.id.to_string(), sa.name))
        .collect())
}

async fn render(
    state: &AppState,
    c: &Console,
    form: &FormData,
    errors: &FieldErrors,
    results: Option<(&[LineResult], bool)>,
) -> PageResult {
    let accounts = accounts(state, c).await?;
    let owner = form.get("owner");
    let checked_ok = results.is_some_and(|(r, dry)| dry && r.iter().any(|l| l.state == "ready"));
    let body = html! {
        nav class="crumbs" aria-label="Breadcrumb" { a href="/api-keys" { "API Keys" } " / " span { "Import" } }
        (header("Import API keys", Some("Bring keys from the system you use today: each keeps working with its original secret."), html! {
            a class="btn btn-link" href="/api-keys" { "Cancel" }
        }))
        @if let Some((lines, dry)) = results {
            (summary(lines, dry))
        }
        div class="card" {
            (form_error(errors))
            form method="post" action="/api-keys/import" class="stack" novalidate {
                (csrf(c))
                (field("Keys, one JSON object per line *", "lines", errors,
                    Some("Each line is a key: its name and other fields as when creating one, plus either key (the plain key) or hash (the old system's hash). At most 1,000 lines."),
                    html! {
                        textarea id="f-lines" name="lines" rows="10" spellcheck="false" class="mono" placeholder=(EXAMPLE) { (form.get("lines")) }
                    }))
                div class="field" {
                    label for="f-file" { "Or load a file" }
                    input id="f-file" type="file" accept=".jsonl,.ndjson,.json,.txt,application/x-ndjson,application/json,text/plain" data-fill="f-lines" aria-describedby="h-file";
                    div class="hint" id="h-file" { "The file's lines are put in the box above, to check before importing. Without JavaScript, paste them instead." }
                }
                (field("Owner of lines that name none", "owner", errors, None, html! {
                    select id="f-owner" name="owner" {
                        option value="" selected[owner.is_empty()] { "Personal (you)" }
                        @for (id, name) in &accounts {
                            option value=(id) selected[owner == id.as_str()] { "Service account: " (name) }
                        }
                    }
                }))
                div class="form-actions" {
                    @if checked_ok {
                        button class="btn btn-primary" type="submit" name="action" value="import" id="import-run" { "Import keys" }
                        button class="btn" type="submit" name="action" value="check" { "Check again" }
                    } @else {
                        button class="btn btn-primary" type="submit" name="action" value="check" id="import-check" { "Check keys" }
                    }
                    a class="btn btn-link" href="/api-keys" { "Cancel" }
                }
            }
        }
    };
    forms::form_page(errors, layout(c, "Import API keys", "keys", body))
}

fn summary(lines: &[LineResult], dry: bool) -> Markup {
    let failed = lines.iter().filter(|l| l.state == "error").count();
    let good = lines.len() - failed;
    let n = |count: usize, one: &str, many: &str| {
        format!("{count} {}", if count == 1 { one } else { many })
    };
    let headline = match (dry, failed) {
        (true, 0) => format!(
            "{} ready to import. Nothing was written yet.",
            n(good, "line is", "lines are")
        ),
        (true, _) => format!(
            "{} ready, {} errors. Nothing was written yet: fix the lines with errors, or import the ready ones.",
            n(good, "line is", "lines are"),
            n(failed, "line has", "lines have")
        ),
        (false, 0) => format!("Imported {}.", n(good, "key", "keys")),
        (false, _) => format!(
            "Imported {}; {} and {} not imported.",
            n(good, "key", "keys"),
            n(failed, "line failed", "lines failed"),
            if failed == 1 { "was" } else { "were" }
        ),
    };
    html! {
        div class={ "banner " @if failed > 0 { "banner-warn" } @else { "banner-info" } } role="status" id="import-summary" { (headline) }
        div class="card table-wrap" {
            table class="table" id="import-results" {
                caption class="sr-only" { "Result of each line" }
                thead { tr { th scope="col" { "Line" } th scope="col" { "Name" } th scope="col" { "Result" } th scope="col" { "Details" } } }
                tbody {
                    @for l in lines {
                        tr data-line=(l.line) {
                            td { (l.line) }
                            td { @match &l.id { Some(id) => a href={ "/api-keys/" (id) } { (l.name) }, None => (l.name) } }
                            td { (badge(l.state)) }
                            td { @if l.detail.is_empty() { span class="muted" { "—" } } @else { (l.detail) } }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /api-keys/import`.
pub async fn page(State(state): State<AppState>, c: Console) -> PageResult {
    c.require(Permission::ApiKeysCreate)?;
    render(
        &state,
        &c,
        &FormData::default(),
        &FieldErrors::default(),
        None,
    )
    .await
}

fn name_of(line: &str) -> String {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(str::to_string))
        .unwrap_or_default()
}

fn explain(e: &crate::api::error::ApiError) -> String {
    match &e.info.param {
        Some(p) => format!("{} (field: {p})", e.info.message),
        None => e.info.message.clone(),
    }
}

/// `POST /api-keys/import`: checks the lines (`action=check`, a dry run) or imports them.
pub async fn submit(State(state): State<AppState>, c: Console, form: FormData) -> PageResult {
    c.check_csrf(&form)?;
    c.require(Permission::ApiKeysCreate)?;
    let dry = form.get("action") != "import";
    let text = form.get("lines");
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    let mut errors = FieldErrors::default();
    if lines.is_empty() {
        errors.add("lines", "Paste at least one line, or load a file.");
    } else if lines.len() > MAX_ITEMS {
        errors.add("lines", "At most 1,000 lines at a time: split the file.");
    }
    if !errors.is_empty() {
        return render(&state, &c, &form, &errors, None).await;
    }
    let owner = form.opt("owner").map(|id| OwnerRef {
        kind: PrincipalKind::ServiceAccount,
        id,
    });
    let mut results: Vec<LineResult> = Vec::with_capacity(lines.len());
    let mut items: Vec<ImportItem> = Vec::new();
    let mut sent: Vec<usize> = Vec::new();
    for (n, line) in &lines {
        match import_line(line) {
            Ok(mut item) => {
                if item.key.owner.is_none() {
                    item.key.owner = owner.clone();
                }
                sent.push(results.len());
                results.push(LineResult {
                    line: *n,
                    name: item.key.name.clone(),
                    state: if dry { "ready" } else { "imported" },
                    detail: String::new(),
                    id: None,
                });
                items.push(item);
            }
            Err(e) => results.push(LineResult {
                line: *n,
                name: name_of(line),
                state: "error",
                detail: explain(&e),
                id: None,
            }),
        }
    }
    let report = state.service.import_api_keys(&c.caller, items, dry).await?;
    for (i, id) in report.imported {
        if let Some(r) = sent.get(i).and_then(|&at| results.get_mut(at)) {
            r.id = (!dry).then(|| id.to_string());
        }
    }
    for (i, e) in report.errors {
        if let Some(r) = sent.get(i).and_then(|&at| results.get_mut(at)) {
            r.state = "error";
            r.detail = explain(&crate::api::error::ApiError::from(e));
        }
    }
    // After an import the box is emptied: its lines are keys now (the table says which).
    let shown = if dry {
        form
    } else {
        FormData(vec![("owner".into(), form.get("owner").to_string())])
    };
    render(
        &state,
        &c,
        &shown,
        &FieldErrors::default(),
        Some((&results, dry)),
    )
    .await
}
