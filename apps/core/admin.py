from django.contrib import admin

from apps.core.models import PlatformKey


@admin.register(PlatformKey)
class PlatformKeyAdmin(admin.ModelAdmin):
    list_display = ["kid", "active", "created_at"]
    fields = ["kid", "active", "created_at", "public_key_pem"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
