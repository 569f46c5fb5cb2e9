//! The page frame: the HTML answers (`page`, `ok`, `see_other`), the head, the shell
//! with the navigation for a signed-in user, the bare frame for signed-out visitors, the
//! and page headings.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use keyhaven_core::permission::Permission;
use maud::{html, Markup, DOCTYPE};

use super::auth::Console;
use super::forms::csrf;

/// An HTML answer.
pub fn page(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

/// 200 with a page.
pub fn ok(markup: Markup) -> Response {
    page(StatusCode::OK, markup)
}

/// A 303 to `to`.
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Keyhaven" }
            link rel="stylesheet" href="/static/app.css";
            script src="/static/app.js" defer {}
        }
    }
}

/// A page without navigation (sign-in, errors for signed-out visitors).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body class="bare" {
                main class="bare-main" {
                    div class="brand brand-center" { span class="logo" { "K" } "Keyhaven" }
                    (body)
                }
            }
        }
    }
}

struct NavItem {
    href: &'static str,
    label: &'static str,
    key: &'static str,
    needs: Option<Permission>,
}

const NAV: &[NavItem] = &[
    NavItem {
        href: "/api-keys",
        label: "API Keys",
        key: "keys",
        needs: Some(Permission::ApiKeysView),
    },
    NavItem {
        href: "/analytics",
        label: "Analytics",
        key: "analytics",
        needs: Some(Permission::ApiKeysView),
    },
    NavItem {
        href: "/settings/api-access",
        label: "Service accounts",
        key: "access",
        needs: Some(Permission::ServiceAccountsView),
    },
    NavItem {
        href: "/settings/api-access?tab=activity",
        label: "Audit log",
        key: "audit",
        needs: Some(Permission::AuditView),
    },
    NavItem {
        href: "/users",
        label: "Users",
        key: "users",
        needs: Some(Permission::UsersView),
    },
    NavItem {
        href: "/roles",
        label: "Roles",
        key: "roles",
        needs: Some(Permission::RolesView),
    },
    NavItem {
        href: "/settings/shared-secret",
        label: "Signing secret",
        key: "secret",
        needs: None,
    },
    NavItem {
        href: "/settings/webhooks",
        label: "Webhooks",
        key: "webhooks",
        needs: Some(Permission::WebhooksView),
    },
    NavItem {
        href: "/account",
        label: "Account",
        key: "account",
        needs: None,
    },
];

/// The page shell with navigation for a signed-in user.
pub fn layout(c: &Console, title: &str, active: &str, content: Markup) -> Markup {
    let secret_visible =
        c.caller.has(Permission::SharedSecretView) || c.caller.has(Permission::SharedSecretManage);
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a class="skip" href="#main" { "Skip to content" }
                div class="shell" {
                    nav class="sidebar" aria-label="Main" {
                        div class="brand" { span class="logo" { "K" } "Keyhaven" }
                        ul {
                            @for item in NAV {
                                @let allowed = match item.needs {
                                    Some(p) => c.caller.has(p),
                                    // The signing secret lives on the Webhooks page; its own
                                    // entry only for those who see it without seeing webhooks.
                                    None => item.key != "secret" || (secret_visible && !c.caller.has(Permission::WebhooksView)),
                                };
                                @if allowed {
                                    li {
                                        a href=(item.href) aria-current=[(item.key == active).then_some("page")] {
                                            (item.label)
                                        }
                                    }
                                }
                            }
                        }
                        div class="sidebar-foot" {
                            div class="who" { (c.caller.principal.name) }
                            form method="post" action="/logout" {
                                (csrf(c))
                                button class="btn btn-link" type="submit" { "Sign out" }
                            }
                        }
                    }
                    main id="main" class="content" {
                        (content)
                    }
                }
                (confirm_dialog())
            }
        }
    }
}

fn confirm_dialog() -> Markup {
    html! {
        dialog id="confirm-dialog" aria-labelledby="confirm-title" {
            h2 id="confirm-title" { "Please confirm" }
            p id="confirm-message" {}
            div class="actions" {
                button type="button" class="btn" data-close="" autofocus { "Cancel" }
                button type="button" class="btn btn-danger confirm" { "Confirm" }
            }
        }
    }
}

/// The page heading with optional actions on the right.
pub fn header(title: &str, subtitle: Option<&str>, actions: Markup) -> Markup {
    html! {
        div class="page-head" {
            div {
                h1 { (title) }
                @if let Some(s) = subtitle { p class="muted" { (s) } }
            }
            div class="page-actions" { (actions) }
        }
    }
}
