"""`/sandbox/wechatpay/…`: the API v3 gateway root (`…/wechatpay` is the account's base URL)."""

from django.urls import path

from apps.sandbox import wechatpay_views as views

urlpatterns = [
    path("v3/<path:rest>", views.wechatpay_api, name="wechatpay-api"),
    path("pay/<str:token>", views.wechatpay_pay, name="wechatpay-pay"),
    path("jsapi", views.wechatpay_jsapi, name="wechatpay-jsapi"),
    path("faults", views.wechatpay_fault_create, name="wechatpay-faults"),
]
