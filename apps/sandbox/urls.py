from django.urls import include, path

from apps.sandbox import fault_views, views

app_name = "sandbox"

urlpatterns = [
    path("", views.index, name="index"),
    path("alipay/gateway.do", views.alipay_gateway, name="alipay-gateway"),
    path("alipay/pay/<str:token>", views.alipay_pay, name="alipay-pay"),
    path("alipay/downloadBillFile.resource", views.alipay_bill_file, name="alipay-bill-file"),
    path("faults/", fault_views.fault_console, name="faults"),
    path("wechatpay/", include("apps.sandbox.wechatpay_urls")),
    path("unionpay/", include("apps.sandbox.unionpay_urls")),
]
