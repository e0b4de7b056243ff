"""The UnionPay sandbox under /sandbox/unionpay/: a merchant account's base URL is
`<host>/sandbox/unionpay/gateway/api/` (production: https://gateway.95516.com/gateway/api/)."""

from django.urls import path

from apps.sandbox import unionpay_views as views

urlpatterns = [
    path("", views.console, name="unionpay-console"),
    path("gateway/api/frontTransReq.do", views.front_trans, name="unionpay-front"),
    path("gateway/api/backTransReq.do", views.back_trans, name="unionpay-back"),
    path("gateway/api/queryTrans.do", views.query_trans, name="unionpay-query"),
    path("gateway/api/fileTransfer.do", views.file_transfer, name="unionpay-file"),
    path("pay/<str:token>", views.pay, name="unionpay-pay"),
]
