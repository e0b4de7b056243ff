from django.urls import path

from apps.sandbox import views

app_name = "sandbox"

urlpatterns = [
    path("", views.index, name="index"),
    path("alipay/gateway.do", views.alipay_gateway, name="alipay-gateway"),
    path("alipay/pay/<str:token>", views.alipay_pay, name="alipay-pay"),
]
