//! Event types: what the outbox announces. One enum, so a misspelt event cannot be written
//! and a reader of events matches every kind there is.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    CustomerCreated,
    CustomerUpdated,
    CustomerErased,
    DocumentsPurged,
    TenantRetentionUpdated,
    PriceCreated,
    TaxRateCreated,
    CouponCreated,
    CustomerSubscriptionCreated,
    CustomerSubscriptionUpdated,
    CustomerSubscriptionDeleted,
    CustomerSubscriptionPaused,
    CustomerSubscriptionResumed,
    CustomerSubscriptionBillingFailed,
    CustomerSubscriptionBillingRetried,
    UsageRecordCreated,
    /// One per `POST /v1/usage_records/batch` that stored records: the ids it stored.
    UsageRecordBatchCreated,
    InvoiceCreated,
    InvoiceFinalized,
    InvoicePaid,
    InvoiceVoided,
    InvoiceMarkedUncollectible,
    InvoicePaymentFailed,
    PaymentSucceeded,
    PaymentFailed,
    PaymentRefunded,
    PaymentUnapplied,
    CreditNoteCreated,
    CreditNoteRefunded,
    CreditNoteRefundFailed,
    CustomerBalanceTransactionCreated,
    TenantRunFailed,
    TenantDunningUpdated,
    ApiKeyCreated,
    ApiKeyRolled,
    ApiKeyRevoked,
    ProviderAccountConnected,
    ProviderAccountDisconnected,
    ReconciliationDiscrepancy,
    ReconciliationCompleted,
    EmailSent,
    EmailFailed,
    WebhookEndpointDisabled,
    AlertPaymentFailureRate,
    AlertUnsettledAttempts,
    AlertWebhookEndpointDisabled,
    AlertBillingOverrun,
    AlertReconciliationDiscrepancy,
}

impl EventType {
    /// The name on the wire (`GET /v1/events?type=`, webhooks), as Stripe spells its own.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::CustomerCreated => "customer.created",
            EventType::CustomerUpdated => "customer.updated",
            EventType::CustomerErased => "customer.erased",
            EventType::DocumentsPurged => "documents.purged",
            EventType::TenantRetentionUpdated => "tenant.retention_updated",
            EventType::PriceCreated => "price.created",
            EventType::TaxRateCreated => "tax_rate.created",
            EventType::CouponCreated => "coupon.created",
            EventType::CustomerSubscriptionCreated => "customer.subscription.created",
            EventType::CustomerSubscriptionUpdated => "customer.subscription.updated",
            EventType::CustomerSubscriptionDeleted => "customer.subscription.deleted",
            EventType::CustomerSubscriptionPaused => "customer.subscription.paused",
            EventType::CustomerSubscriptionResumed => "customer.subscription.resumed",
            EventType::CustomerSubscriptionBillingFailed => "customer.subscription.billing_failed",
            EventType::CustomerSubscriptionBillingRetried => {
                "customer.subscription.billing_retried"
            }
            EventType::UsageRecordCreated => "usage_record.created",
            EventType::UsageRecordBatchCreated => "usage_record.batch_created",
            EventType::InvoiceCreated => "invoice.created",
            EventType::InvoiceFinalized => "invoice.finalized",
            EventType::InvoicePaid => "invoice.paid",
            EventType::InvoiceVoided => "invoice.voided",
            EventType::InvoiceMarkedUncollectible => "invoice.marked_uncollectible",
            EventType::InvoicePaymentFailed => "invoice.payment_failed",
            EventType::PaymentSucceeded => "payment.succeeded",
            EventType::PaymentFailed => "payment.failed",
            EventType::PaymentRefunded => "payment.refunded",
            EventType::PaymentUnapplied => "payment.unapplied",
            EventType::CreditNoteCreated => "credit_note.created",
            EventType::CreditNoteRefunded => "credit_note.refunded",
            EventType::CreditNoteRefundFailed => "credit_note.refund_failed",
            EventType::CustomerBalanceTransactionCreated => "customer_balance_transaction.created",
            EventType::TenantRunFailed => "tenant.run_failed",
            EventType::TenantDunningUpdated => "tenant.dunning_updated",
            EventType::ApiKeyCreated => "api_key.created",
            EventType::ApiKeyRolled => "api_key.rolled",
            EventType::ApiKeyRevoked => "api_key.revoked",
            EventType::ProviderAccountConnected => "provider_account.connected",
            EventType::ProviderAccountDisconnected => "provider_account.disconnected",
            EventType::ReconciliationDiscrepancy => "reconciliation.discrepancy",
            EventType::ReconciliationCompleted => "reconciliation.completed",
            EventType::EmailSent => "email.sent",
            EventType::EmailFailed => "email.failed",
            EventType::WebhookEndpointDisabled => "webhook_endpoint.disabled",
            EventType::AlertPaymentFailureRate => "alert.payment_failure_rate",
            EventType::AlertUnsettledAttempts => "alert.unsettled_attempts",
            EventType::AlertWebhookEndpointDisabled => "alert.webhook_endpoint_disabled",
            EventType::AlertBillingOverrun => "alert.billing_overrun",
            EventType::AlertReconciliationDiscrepancy => "alert.reconciliation_discrepancy",
        }
    }

    /// Every type, for checking what a webhook endpoint subscribes to.
    pub const ALL: &[EventType] = &[
        EventType::CustomerCreated,
        EventType::CustomerUpdated,
        EventType::CustomerErased,
        EventType::DocumentsPurged,
        EventType::TenantRetentionUpdated,
        EventType::PriceCreated,
        EventType::TaxRateCreated,
        EventType::CouponCreated,
        EventType::CustomerSubscriptionCreated,
        EventType::CustomerSubscriptionUpdated,
        EventType::CustomerSubscriptionDeleted,
        EventType::CustomerSubscriptionPaused,
        EventType::CustomerSubscriptionResumed,
        EventType::CustomerSubscriptionBillingFailed,
        EventType::CustomerSubscriptionBillingRetried,
        EventType::UsageRecordCreated,
        EventType::UsageRecordBatchCreated,
        EventType::InvoiceCreated,
        EventType::InvoiceFinalized,
        EventType::InvoicePaid,
        EventType::InvoiceVoided,
        EventType::InvoiceMarkedUncollectible,
        EventType::InvoicePaymentFailed,
        EventType::PaymentSucceeded,
        EventType::PaymentFailed,
        EventType::PaymentRefunded,
        EventType::PaymentUnapplied,
        EventType::CreditNoteCreated,
        EventType::CreditNoteRefunded,
        EventType::CreditNoteRefundFailed,
        EventType::CustomerBalanceTransactionCreated,
        EventType::TenantRunFailed,
        EventType::TenantDunningUpdated,
        EventType::ApiKeyCreated,
        EventType::ApiKeyRolled,
        EventType::ApiKeyRevoked,
        EventType::ProviderAccountConnected,
        EventType::ProviderAccountDisconnected,
        EventType::ReconciliationDiscrepancy,
        EventType::ReconciliationCompleted,
        EventType::EmailSent,
        EventType::EmailFailed,
        EventType::WebhookEndpointDisabled,
        EventType::AlertPaymentFailureRate,
        EventType::AlertUnsettledAttempts,
        EventType::AlertWebhookEndpointDisabled,
        EventType::AlertBillingOverrun,
        EventType::AlertReconciliationDiscrepancy,
    ];

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.iter().copied().find(|t| t.as_str() == s)
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
