from django import template

from apps.payments.selectors import attention_counts

register = template.Library()


@register.inclusion_tag("admin/paysys_attention.html")
def paysys_attention():
    return {"items": attention_counts()}
