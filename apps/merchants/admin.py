from django.contrib import admin

from apps.merchants.models import ApiKey, App, Merchant, WebhookEndpoint


class AppInline(admin.TabularInline):
    model = App
    fields = ["public_id", "name", "created_at"]
    readonly_fields = fields
    extra = 0
    show_change_link = True


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]
    inlines = [AppInline]


class ApiKeyInline(admin.TabularInline):
    """Keys are listed by prefix only: the secret itself is never stored or shown."""

    model = ApiKey
    fields = ["display_prefix", "livemode", "created_at", "revoked_at"]
    readonly_fields = ["display_prefix", "livemode", "created_at"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class WebhookEndpointInline(admin.TabularInline):
    model = WebhookEndpoint
    fields = ["url", "enabled", "created_at"]
    readonly_fields = ["created_at"]
    extra = 0


@admin.register(App)
class AppAdmin(admin.ModelAdmin):
    list_display = ["public_id", "name", "merchant", "created_at"]
    search_fields = ["public_id", "name", "merchant__name"]
    readonly_fields = ["public_id", "created_at"]
    fields = ["public_id", "merchant", "name", "public_key_pem", "created_at"]
    inlines = [ApiKeyInline, WebhookEndpointInline]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["display_prefix", "app", "livemode", "created_at", "revoked_at"]
    list_filter = ["livemode"]
    fields = ["display_prefix", "app", "livemode", "created_at", "revoked_at"]
    readonly_fields = ["display_prefix", "app", "livemode", "created_at"]

    def has_add_permission(self, request):
        return False


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["url", "app", "enabled", "created_at"]
    list_filter = ["enabled"]
