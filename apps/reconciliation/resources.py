"""Finance reports (django-import-export): daily summary, discrepancy list, channel fees."""

from import_export import fields, resources

from apps.reconciliation.models import Discrepancy, ReconRun


class DailySummaryResource(resources.ModelResource):
    account = fields.Field(attribute="account__name", column_name="account")

    class Meta:
        model = ReconRun
        fields = ("id", "account", "day", "status", "lines", "matched", "held", "local_missing", "channel_missing",
                  "amount_mismatch", "status_mismatch", "fee_mismatch", "duplicate_line", "currency", "bill_amount",
                  "platform_fee", "cleared_to_bank", "error")  # fmt: skip
        export_order = fields


class ChannelFeeResource(resources.ModelResource):
    """The channel's fee totals on its bill against the channel cost paysys computed (minor units)."""

    account = fields.Field(attribute="account__name", column_name="account")
    difference = fields.Field(column_name="difference")

    class Meta:
        model = ReconRun
        fields = ("account", "day", "currency", "bill_fee", "local_fee", "difference")
        export_order = fields

    def dehydrate_difference(self, run: ReconRun) -> int:
        return run.bill_fee - run.local_fee


class DiscrepancyResource(resources.ModelResource):
    account = fields.Field(attribute="account__name", column_name="account")
    difference = fields.Field(column_name="difference")

    class Meta:
        model = Discrepancy
        fields = ("id", "account", "day", "kind", "item_kind", "ref", "trade_no", "currency", "bill_kind",
                  "bill_amount", "bill_fee", "local_kind", "local_status", "local_amount", "local_fee", "difference",
                  "status", "resolution", "created_at")  # fmt: skip
        export_order = fields

    def dehydrate_difference(self, d: Discrepancy) -> int:
        return d.difference
