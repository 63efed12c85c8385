//! `/v1/credit_notes` and `/v1/settings/dunning`.

use super::error::ApiError;
use super::extract::{Body, Ctx, Query};
use super::{AppState, List, body_id, list, page, path_id};
use crate::domain::credit_note::{Credit, CreditNote, CreditNoteLine, Reason, Settle};
use crate::domain::ids::{CreditNoteId, InvoiceId, InvoiceLineId};
use crate::domain::payment::{DunningPlan, FinalAction};
use crate::payments::refunds::{self as service, NewCreditNote};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/credit_notes",
            post(create_credit_note).get(list_credit_notes),
        )
        .route("/credit_notes/{id}", get(get_credit_note))
        .route(
            "/settings/dunning",
            get(get_dunning).put(put_dunning).delete(delete_dunning),
        )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineBody {
    invoice_line: String,
    amount: i64,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCreditNote {
    invoice: String,
    /// The whole credit, tax included (or give `lines`).
    amount: Option<i64>,
    lines: Option<Vec<LineBody>>,
    /// duplicate | fraudulent | order_change | product_unsatisfactory
    reason: String,
    memo: Option<String>,
    /// Give the money back through the payment provider (paid invoices only).
    #[serde(default)]
    refund: bool,
    /// Put the money on the customer's credit balance for the next invoices (paid invoices
    /// only; not with `refund`).
    #[serde(default)]
    credit_to_balance: bool,
}

#[utoipa::path(post, path = "/v1/credit_notes", request_body = CreateCreditNote, responses((status = 200, description = "the credit note, with its refund's status")))]
pub async fn create_credit_note(
    State(s): State<AppState>,
    ctx: Ctx,
    Body(b): Body<CreateCreditNote>,
) -> Result<Json<CreditNote>, ApiError> {
    let invoice = body_id("invoice", &b.invoice, InvoiceId::parse)?;
    let credit = match (b.amount, b.lines) {
        (Some(a), None) => Credit::Amount(a),
        (None, Some(lines)) if !lines.is_empty() && lines.len() <= 100 => Credit::Lines(
            lines
                .into_iter()
                .enumerate()
                .map(|(i, l)| {
                    Ok(CreditNoteLine {
                        invoice_line: body_id(
                            &format!("lines[{i}].invoice_line"),
                            &l.invoice_line,
                            InvoiceLineId::parse,
                        )?,
                        amount: l.amount,
                    })
                })
                .collect::<Result<_, ApiError>>()?,
        ),
        (None, Some(_)) => {
            return Err(ApiError::invalid(
                "lines",
                "lines must hold 1 to 100 entries",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "amount",
                "give either amount or lines, not both",
            ));
        }
        (None, None) => return Err(ApiError::missing("amount")),
    };
    let reason = Reason::parse(&b.reason).ok_or_else(|| {
        ApiError::invalid(
            "reason",
            "reason must be one of duplicate, fraudulent, order_change, product_unsatisfactory",
        )
    })?;
    if b.memo.as_ref().is_some_and(|m| m.chars().count() > 5000) {
        return Err(ApiError::invalid("memo", "memo is at most 5000 characters"));
    }
    let settle = match (b.refund, b.credit_to_balance) {
        (true, true) => {
            return Err(ApiError::invalid(
                "credit_to_balance",
                "give refund or credit_to_balance, not both",
            ));
        }
        (true, false) => Settle::Refund,
        (false, true) => Settle::Balance,
        (false, false) => Settle::OutOfBand,
    };
    let new = NewCreditNote {
        invoice,
        credit,
        reason,
        memo: b.memo,
        settle,
    };
    Ok(Json(
        service::create_credit_note(&s.db, &s.payments, &ctx.tenant, new, ctx.now).await?,
    ))
}

#[utoipa::path(get, path = "/v1/credit_notes/{id}", responses((status = 200, description = "the credit note")))]
pub async fn get_credit_note(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<CreditNote>, ApiError> {
    let id = path_id("credit note", &id, CreditNoteId::parse)?;
    Ok(Json(
        service::find_credit_note(&s.db, &ctx.tenant, &id).await?,
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListCreditNotes {
    invoice: Option<String>,
    limit: Option<u32>,
    starting_after: Option<String>,
}

#[utoipa::path(get, path = "/v1/credit_notes", params(ListCreditNotes), responses((status = 200, description = "credit notes, newest first")))]
pub async fn list_credit_notes(
    State(s): State<AppState>,
    ctx: Ctx,
    Query(q): Query<ListCreditNotes>,
) -> Result<Json<List<CreditNote>>, ApiError> {
    let invoice = q
        .invoice
        .map(|i| body_id("invoice", &i, InvoiceId::parse))
        .transpose()?;
    let page = page(&s, &ctx, "cn", q.limit, q.starting_after).await?;
    Ok(list(
        service::list_credit_notes(&s.db, &ctx.tenant, invoice.as_ref(), &page).await?,
    ))
}

#[derive(Serialize)]
pub struct DunningSettings {
    object: &'static str,
    retry_days: Vec<u32>,
    final_action: FinalAction,
    /// `tenant` when set here, `installation` when the `[dunning]` config applies.
    source: &'static str,
}

fn settings(plan: &DunningPlan, source: &'static str) -> Json<DunningSettings> {
    Json(DunningSettings {
        object: "dunning_settings",
        retry_days: plan.retry_days.clone(),
        final_action: plan.final_action,
        source,
    })
}

#[utoipa::path(get, path = "/v1/settings/dunning", responses((status = 200, description = "the dunning plan in force")))]
pub async fn get_dunning(State(s): State<AppState>, ctx: Ctx) -> Json<DunningSettings> {
    match &ctx.tenant.dunning {
        Some(p) => settings(p, "tenant"),
        None => settings(&s.payments.plan, "installation"),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutDunning {
    /// Days after the first failure on which to retry (at most 10, increasing, 1..=60).
    retry_days: Vec<u32>,
    /// cancel | leave_past_due | mark_unpaid
    final_action: String,
}

#[utoipa::path(put, path = "/v1/settings/dunning", request_body = PutDunning, responses((status = 200, description = "the tenant's own dunning plan")))]
pub async fn put_dunning(
    State(s): State<AppState>,
    ctx: Ctx,
    Body(b): Body<PutDunning>,
) -> Result<Json<DunningSettings>, ApiError> {
    let action = FinalAction::parse(&b.final_action).ok_or_else(|| {
        ApiError::invalid(
            "final_action",
            "final_action must be one of cancel, leave_past_due, mark_unpaid",
        )
    })?;
    let plan =
        DunningPlan::new(b.retry_days, action).map_err(|e| ApiError::invalid("retry_days", e))?;
    crate::services::tenants::set_dunning(&s.db, &ctx.tenant, Some(&plan), ctx.now).await?;
    Ok(settings(&plan, "tenant"))
}

#[utoipa::path(delete, path = "/v1/settings/dunning", responses((status = 200, description = "back to the installation's plan")))]
pub async fn delete_dunning(
    State(s): State<AppState>,
    ctx: Ctx,
) -> Result<Json<DunningSettings>, ApiError> {
    crate::services::tenants::set_dunning(&s.db, &ctx.tenant, None, ctx.now).await?;
    Ok(settings(&s.payments.plan, "installation"))
}
