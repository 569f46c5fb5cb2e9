//! `/v1/organizations/{org}/analytics/verifications` and `…/analytics/top-keys`
//! (ANALYTICS.md): verification counts by time, key, code, tag and owner.

use axum::extract::State;
use base64::Engine;
use keyhaven_core::id::Id;
use keyhaven_core::time::{from_millis, rfc3339};
use keyhaven_service::analytics::VerificationQuery;
use keyhaven_store::{AnalyticsRow, CodeFilter, Dimension, Granularity};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, CommonErrors};
use super::params::{PathParams, QueryParams};
use crate::app::AppState;
use crate::auth::extract::Auth;

/// One row of verification counts: a bucket, the dimensions grouped by, the count.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerificationCountView {
    /// Start of the hour or day (UTC).
    #[schema(format = DateTime)]
    pub time: String,
    /// With `group_by=key`: the key (`null` for verifications without one).
    #[serde(skip_serializing_if = "Grouped::absent")]
    #[schema(value_type = Option<String>)]
    pub key_id: Grouped,
    /// With `group_by=code`: VALID, MALFORMED, NOT_FOUND, EXPIRED, REVOKED, DISABLED,
    /// FORBIDDEN, RATE_LIMITED, USAGE_EXCEEDED, IP_NOT_ALLOWED (or INVALID, refused
    /// verifications counted before codes were kept).
    #[serde(skip_serializing_if = "Grouped::absent")]
    #[schema(value_type = Option<String>)]
    pub code: Grouped,
    /// With `group_by=tag`: the tag.
    #[serde(skip_serializing_if = "Grouped::absent")]
    #[schema(value_type = Option<String>)]
    pub tag: Grouped,
    /// With `group_by=owner`: the key's owner (`null` for verifications without a key).
    #[serde(skip_serializing_if = "Grouped::absent")]
    #[schema(value_type = Option<String>)]
    pub owner_id: Grouped,
    /// Verifications (never 0: empty buckets are left out).
    pub count: i64,
}

/// A dimension's value in a row: absent when not grouped by it, else a value or null.
#[derive(Debug)]
pub enum Grouped {
    /// Not grouped by this dimension.
    Absent,
    /// Grouped by it.
    Value(Option<String>),
}

impl Grouped {
    fn absent(&self) -> bool {
        matches!(self, Grouped::Absent)
    }
}

impl Serialize for Grouped {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Grouped::Value(Some(v)) => s.serialize_str(v),
            _ => s.serialize_none(),
        }
    }
}

/// A page of verification counts, ordered by time.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerificationCountsView {
    /// The rows.
    pub data: Vec<VerificationCountView>,
    /// Whether more rows follow.
    pub has_more: bool,
    /// Pass as `cursor` (with the same other parameters) for the next page.
    pub next_cursor: Option<String>,
}

/// A key among the busiest.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopKeyItem {
    /// The key.
    pub key_id: String,
    /// Its name (`null` once the key is deleted).
    pub name: Option<String>,
    /// Its owner.
    pub owner_id: Option<String>,
    /// Its verifications in the range (with `code` only, when given).
    pub total: i64,
    /// Verifications per code (codes without any left out).
    #[schema(value_type = Object, example = json!({"VALID": 120, "RATE_LIMITED": 3}))]
    pub by_code: serde_json::Map<String, serde_json::Value>,
}

/// The busiest keys, busiest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopKeysView {
    /// The keys.
    pub data: Vec<TopKeyItem>,
    /// Start of the range read.
    #[schema(format = DateTime)]
    pub since: String,
    /// End of the range read.
    #[schema(format = DateTime)]
    pub until: String,
}

fn bad(code: &'static str, message: impl Into<String>, param: &str) -> ApiError {
    ApiError::bad_request(code, message.into(), Some(param))
}

fn id_param(q: &QueryParams, name: &str) -> Result<Option<Id>, ApiError> {
    match q.get(name)? {
        None => Ok(None),
        Some(v) => Id::parse(v, name)
            .map(Some)
            .map_err(|_| bad("invalid_id", format!("{name} is not an id"), name)),
    }
}

fn encode_row_cursor(r: &AnalyticsRow) -> String {
    let json = serde_json::to_vec(r).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn decode_row_cursor(c: &str) -> Result<AnalyticsRow, ApiError> {
    let invalid = || {
        bad(
            "invalid_cursor",
            "cursor is not one this API returned",
            "cursor",
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| invalid())?;
    serde_json::from_slice(&bytes).map_err(|_| invalid())
}

/// Verification counts over time [api_keys.view].
#[utoipa::path(get, path = "/v1/organizations/{org}/analytics/verifications", tag = "analytics",
    params(("org" = String, Path),
        ("since" = Option<String>, Query, format = DateTime, description = "start (default: 24 hours before until); buckets starting at or after the start of its hour or day count"),
        ("until" = Option<String>, Query, format = DateTime, description = "end (default: now; at most 90 days after since); buckets starting before it count"),
        ("granularity" = Option<String>, Query, description = "hour (default) or day (UTC)", pattern = "^(hour|day)$"),
        ("group_by" = Option<Vec<String>>, Query, description = "key, code, tag or owner; repeatable (group_by=key&group_by=code) or comma-separated"),
        ("key_id" = Option<String>, Query), ("owner_id" = Option<String>, Query),
        ("code" = Option<String>, Query, description = "only this code, e.g. RATE_LIMITED"),
        ("tag" = Option<String>, Query, description = "only verifications carrying this tag"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "rows per page (default 100)"),
        ("cursor" = Option<String>, Query)),
    responses((status = 200, body = VerificationCountsView), CommonErrors), security(("bearer" = [])))]
pub async fn verifications(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
    q: QueryParams,
) -> Result<axum::Json<VerificationCountsView>, ApiError> {
    q.only(&[
        "since",
        "until",
        "granularity",
        "group_by",
        "key_id",
        "owner_id",
        "code",
        "tag",
        "limit",
        "cursor",
    ])?;
    let granularity = match q.get("granularity")? {
        None | Some("hour") => Granularity::Hour,
        Some("day") => Granularity::Day,
        Some(_) => {
            return Err(bad(
                "invalid_granularity",
                "granularity must be hour or day",
                "granularity",
            ))
        }
    };
    let mut group_by = Vec::new();
    for v in q.all("group_by")? {
        for d in v.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let dim = match d {
                "key" => Dimension::Key,
                "code" => Dimension::Code,
                "tag" => Dimension::Tag,
                "owner" => Dimension::Owner,
                _ => {
                    return Err(bad(
                        "invalid_group_by",
                        "group_by must be key, code, tag or owner",
                        "group_by",
                    ))
                }
            };
            if !group_by.contains(&dim) {
                group_by.push(dim);
            }
        }
    }
    let limit = match q.get("limit")? {
        None => 100,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                bad(
                    "invalid_limit",
                    "limit must be a number from 1 to 1000",
                    "limit",
                )
            })?,
    };
    let after = q.get("cursor")?.map(decode_row_cursor).transpose()?;
    let code = q.get("code")?.map(str::to_string);
    let query = VerificationQuery {
        since: q.time("since")?,
        until: q.time("until")?,
        granularity,
        group_by: group_by.clone(),
        key_id: id_param(&q, "key_id")?,
        owner_id: id_param(&q, "owner_id")?,
        code,
        tag: q.get("tag")?.map(str::to_string),
        limit,
        after,
    };
    let (page, _, _) = s
        .service
        .verification_analytics(&auth.caller, &query)
        .await?;
    let next_cursor = if page.has_more {
        page.rows.last().map(encode_row_cursor)
    } else {
        None
    };
    let has = |d: Dimension| group_by.contains(&d);
    let pick = |d: Dimension, v: &Option<String>| {
        if has(d) {
            Grouped::Value(v.clone())
        } else {
            Grouped::Absent
        }
    };
    let data = page
        .rows
        .iter()
        .map(|r| VerificationCountView {
            time: rfc3339(&from_millis(r.time)),
            key_id: pick(Dimension::Key, &r.key_id),
            code: pick(Dimension::Code, &r.code),
            tag: pick(Dimension::Tag, &r.tag),
            owner_id: pick(Dimension::Owner, &r.owner_id),
            count: r.count,
        })
        .collect();
    Ok(axum::Json(VerificationCountsView {
        data,
        has_more: page.has_more,
        next_cursor,
    }))
}

/// The busiest keys in a range, with their counts per code [api_keys.view].
#[utoipa::path(get, path = "/v1/organizations/{org}/analytics/top-keys", tag = "analytics",
    params(("org" = String, Path),
        ("since" = Option<String>, Query, format = DateTime, description = "start (default: 24 hours before until), from the start of its hour"),
        ("until" = Option<String>, Query, format = DateTime, description = "end (default: now; at most 90 days after since)"),
        ("code" = Option<String>, Query, description = "rank by verifications with this code only, e.g. RATE_LIMITED"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "keys (default 10)")),
    responses((status = 200, body = TopKeysView), CommonErrors), security(("bearer" = [])))]
pub async fn top_keys(
    State(s): State<AppState>,
    auth: Auth,
    PathParams(_org): PathParams<String>,
    q: QueryParams,
) -> Result<axum::Json<TopKeysView>, ApiError> {
    q.only(&["since", "until", "code", "limit"])?;
    let limit = match q.get("limit")? {
        None => 10,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                bad(
                    "invalid_limit",
                    "limit must be a number from 1 to 100",
                    "limit",
                )
            })?,
    };
    let (keys, since, until) = s
        .service
        .top_keys(
            &auth.caller,
            q.time("since")?,
            q.time("until")?,
            match q.get("code")? {
                Some(c) => CodeFilter::Only(c),
                None => CodeFilter::All,
            },
            limit,
        )
        .await?;
    Ok(axum::Json(TopKeysView {
        data: keys
            .into_iter()
            .map(|k| TopKeyItem {
                key_id: k.key_id,
                name: k.name,
                owner_id: k.owner_id,
                total: k.total,
                by_code: k
                    .by_code
                    .into_iter()
                    .map(|(c, n)| (c, serde_json::Value::from(n)))
                    .collect(),
            })
            .collect(),
        since: rfc3339(&since),
        until: rfc3339(&until),
    }))
}
