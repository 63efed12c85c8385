//! `GET /openapi.json`, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "recur", description = "Subscription billing and invoicing API. Amounts are integers in the currency's minor unit; times are RFC 3339 UTC. Errors: {\"error\": {\"code\", \"message\", \"param\"}}."),
    paths(
        super::customers::create_customer, super::customers::get_customer, super::customers::update_customer, super::customers::list_customers,
        super::customers::create_balance_transaction, super::customers::list_balance_transactions,
        super::customers::erase_customer, super::customers::export_customer,
        super::catalogue::create_price, super::catalogue::get_price, super::catalogue::list_prices,
        super::catalogue::create_tax_rate, super::catalogue::get_tax_rate, super::catalogue::list_tax_rates,
        super::catalogue::create_coupon, super::catalogue::get_coupon, super::catalogue::list_coupons,
        super::subscriptions::create_subscription, super::subscriptions::get_subscription, super::subscriptions::list_subscriptions,
        super::subscriptions::update_subscription, super::subscriptions::cancel_subscription,
        super::subscriptions::pause_subscription, super::subscriptions::resume_subscription,
        super::subscriptions::retry_subscription_billing,
        super::usage::create_usage_record, super::usage::create_usage_batch, super::events::list_events, super::events::list_alerts,
        super::invoices::list_invoices, super::invoices::get_invoice, super::invoices::void_invoice,
        super::invoices::mark_uncollectible, super::invoices::advance,
        super::invoices::pay_invoice, super::invoices::list_payments,
        super::credit_notes::create_credit_note, super::credit_notes::get_credit_note, super::credit_notes::list_credit_notes,
        super::credit_notes::get_dunning, super::credit_notes::put_dunning, super::credit_notes::delete_dunning,
        super::documents::get_settings, super::documents::put_settings, super::documents::invoice_pdf, super::documents::credit_note_pdf, super::einvoices::invoice_ubl, super::einvoices::invoice_cii, super::einvoices::credit_note_ubl, super::einvoices::credit_note_cii, super::einvoices::invoice_ksef, super::einvoices::credit_note_ksef, super::documents::upcoming, super::documents::upcoming_pdf, super::exports::export, super::reports::get_summary, super::webhook_endpoints::create_endpoint, super::webhook_endpoints::list_endpoints, super::webhook_endpoints::get_endpoint, super::webhook_endpoints::delete_endpoint, super::webhook_endpoints::list_deliveries, super::webhook_endpoints::resend_delivery,
        super::provider_accounts::connect, super::provider_accounts::get_account, super::provider_accounts::disconnect,
        super::retention::get_retention, super::retention::put_retention,
        super::api_keys::create_key, super::api_keys::list_keys, super::api_keys::get_key, super::api_keys::revoke_key, super::api_keys::roll_key,
    ),
    modifiers(&BearerAuth),
    security(("api_key" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
