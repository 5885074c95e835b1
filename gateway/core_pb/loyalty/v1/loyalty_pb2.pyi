import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IdentificationStrength(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IDENTIFICATION_STRENGTH_UNSPECIFIED: _ClassVar[IdentificationStrength]
    IDENTIFICATION_STRENGTH_WEAK: _ClassVar[IdentificationStrength]
    IDENTIFICATION_STRENGTH_STRONG: _ClassVar[IdentificationStrength]
IDENTIFICATION_STRENGTH_UNSPECIFIED: IdentificationStrength
IDENTIFICATION_STRENGTH_WEAK: IdentificationStrength
IDENTIFICATION_STRENGTH_STRONG: IdentificationStrength

class CustomerRef(_message.Message):
    __slots__ = ("phone", "card", "app_code", "qr_payload", "customer_id", "otp", "if_known")
    PHONE_FIELD_NUMBER: _ClassVar[int]
    CARD_FIELD_NUMBER: _ClassVar[int]
    APP_CODE_FIELD_NUMBER: _ClassVar[int]
    QR_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    OTP_FIELD_NUMBER: _ClassVar[int]
    IF_KNOWN_FIELD_NUMBER: _ClassVar[int]
    phone: str
    card: str
    app_code: str
    qr_payload: str
    customer_id: str
    otp: str
    if_known: bool
    def __init__(self, phone: _Optional[str] = ..., card: _Optional[str] = ..., app_code: _Optional[str] = ..., qr_payload: _Optional[str] = ..., customer_id: _Optional[str] = ..., otp: _Optional[str] = ..., if_known: _Optional[bool] = ...) -> None: ...

class Staff(_message.Message):
    __slots__ = ("store_id", "terminal_id", "cashier_id", "cashier_name")
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_ID_FIELD_NUMBER: _ClassVar[int]
    CASHIER_ID_FIELD_NUMBER: _ClassVar[int]
    CASHIER_NAME_FIELD_NUMBER: _ClassVar[int]
    store_id: str
    terminal_id: str
    cashier_id: str
    cashier_name: str
    def __init__(self, store_id: _Optional[str] = ..., terminal_id: _Optional[str] = ..., cashier_id: _Optional[str] = ..., cashier_name: _Optional[str] = ...) -> None: ...

class IdentifyCustomerRequest(_message.Message):
    __slots__ = ("customer", "at")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    customer: CustomerRef
    at: _timestamp_pb2.Timestamp
    def __init__(self, customer: _Optional[_Union[CustomerRef, _Mapping]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Certificate(_message.Message):
    __slots__ = ("lot_id", "kind", "points", "cap_bp", "expires_at")
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    CAP_BP_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    lot_id: str
    kind: str
    points: int
    cap_bp: int
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, lot_id: _Optional[str] = ..., kind: _Optional[str] = ..., points: _Optional[int] = ..., cap_bp: _Optional[int] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Customer(_message.Message):
    __slots__ = ("customer_id", "display_name", "tier", "balance", "ordinary_points", "certificate_points", "debt", "held_points", "certificates", "strength", "blocked", "referral_code", "phone")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    ORDINARY_POINTS_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_POINTS_FIELD_NUMBER: _ClassVar[int]
    DEBT_FIELD_NUMBER: _ClassVar[int]
    HELD_POINTS_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    REFERRAL_CODE_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    display_name: str
    tier: str
    balance: int
    ordinary_points: int
    certificate_points: int
    debt: int
    held_points: int
    certificates: _containers.RepeatedCompositeFieldContainer[Certificate]
    strength: IdentificationStrength
    blocked: bool
    referral_code: str
    phone: str
    def __init__(self, customer_id: _Optional[str] = ..., display_name: _Optional[str] = ..., tier: _Optional[str] = ..., balance: _Optional[int] = ..., ordinary_points: _Optional[int] = ..., certificate_points: _Optional[int] = ..., debt: _Optional[int] = ..., held_points: _Optional[int] = ..., certificates: _Optional[_Iterable[_Union[Certificate, _Mapping]]] = ..., strength: _Optional[_Union[IdentificationStrength, str]] = ..., blocked: _Optional[bool] = ..., referral_code: _Optional[str] = ..., phone: _Optional[str] = ...) -> None: ...

class IdentifyCustomerResponse(_message.Message):
    __slots__ = ("customer",)
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    customer: Customer
    def __init__(self, customer: _Optional[_Union[Customer, _Mapping]] = ...) -> None: ...

class RegisterCustomerRequest(_message.Message):
    __slots__ = ("phone", "card", "name", "gender", "birth_date", "email", "channel", "referrer_code", "staff", "occurred_at", "extra_dates")
    PHONE_FIELD_NUMBER: _ClassVar[int]
    CARD_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    GENDER_FIELD_NUMBER: _ClassVar[int]
    BIRTH_DATE_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    REFERRER_CODE_FIELD_NUMBER: _ClassVar[int]
    STAFF_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    EXTRA_DATES_FIELD_NUMBER: _ClassVar[int]
    phone: str
    card: str
    name: str
    gender: str
    birth_date: str
    email: str
    channel: str
    referrer_code: str
    staff: Staff
    occurred_at: _timestamp_pb2.Timestamp
    extra_dates: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, phone: _Optional[str] = ..., card: _Optional[str] = ..., name: _Optional[str] = ..., gender: _Optional[str] = ..., birth_date: _Optional[str] = ..., email: _Optional[str] = ..., channel: _Optional[str] = ..., referrer_code: _Optional[str] = ..., staff: _Optional[_Union[Staff, _Mapping]] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., extra_dates: _Optional[_Iterable[str]] = ...) -> None: ...

class RegisterCustomerResponse(_message.Message):
    __slots__ = ("customer", "created", "welcome_points")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    WELCOME_POINTS_FIELD_NUMBER: _ClassVar[int]
    customer: Customer
    created: bool
    welcome_points: int
    def __init__(self, customer: _Optional[_Union[Customer, _Mapping]] = ..., created: _Optional[bool] = ..., welcome_points: _Optional[int] = ...) -> None: ...

class IssueAppCodeRequest(_message.Message):
    __slots__ = ("customer", "at")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    customer: CustomerRef
    at: _timestamp_pb2.Timestamp
    def __init__(self, customer: _Optional[_Union[CustomerRef, _Mapping]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class IssueAppCodeResponse(_message.Message):
    __slots__ = ("code", "qr_payload", "expires_at")
    CODE_FIELD_NUMBER: _ClassVar[int]
    QR_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    code: str
    qr_payload: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, code: _Optional[str] = ..., qr_payload: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SendOtpRequest(_message.Message):
    __slots__ = ("phone", "purpose", "wait_ms")
    PHONE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    phone: str
    purpose: str
    wait_ms: int
    def __init__(self, phone: _Optional[str] = ..., purpose: _Optional[str] = ..., wait_ms: _Optional[int] = ...) -> None: ...

class SendOtpResponse(_message.Message):
    __slots__ = ("sent", "debug_code", "code", "status", "retry_after_s", "message")
    SENT_FIELD_NUMBER: _ClassVar[int]
    DEBUG_CODE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    sent: bool
    debug_code: str
    code: str
    status: str
    retry_after_s: int
    message: str
    def __init__(self, sent: _Optional[bool] = ..., debug_code: _Optional[str] = ..., code: _Optional[str] = ..., status: _Optional[str] = ..., retry_after_s: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class VerifyOtpRequest(_message.Message):
    __slots__ = ("phone", "code")
    PHONE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    phone: str
    code: str
    def __init__(self, phone: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class VerifyOtpResponse(_message.Message):
    __slots__ = ("ok", "reason", "tries_left")
    OK_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TRIES_LEFT_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    reason: str
    tries_left: int
    def __init__(self, ok: _Optional[bool] = ..., reason: _Optional[str] = ..., tries_left: _Optional[int] = ...) -> None: ...

class Line(_message.Message):
    __slots__ = ("line_id", "sku", "category", "name", "qty_milli", "price", "amount", "min_unit_price", "discountable", "accruable", "point_price")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    QTY_MILLI_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    MIN_UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    DISCOUNTABLE_FIELD_NUMBER: _ClassVar[int]
    ACCRUABLE_FIELD_NUMBER: _ClassVar[int]
    POINT_PRICE_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    sku: str
    category: str
    name: str
    qty_milli: int
    price: int
    amount: int
    min_unit_price: int
    discountable: bool
    accruable: bool
    point_price: int
    def __init__(self, line_id: _Optional[str] = ..., sku: _Optional[str] = ..., category: _Optional[str] = ..., name: _Optional[str] = ..., qty_milli: _Optional[int] = ..., price: _Optional[int] = ..., amount: _Optional[int] = ..., min_unit_price: _Optional[int] = ..., discountable: _Optional[bool] = ..., accruable: _Optional[bool] = ..., point_price: _Optional[int] = ...) -> None: ...

class ReceiptDraft(_message.Message):
    __slots__ = ("customer", "lines", "redeem_points", "redeem_max", "occurred_at", "staff", "register_id", "receipt_number", "total", "channel")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    REDEEM_POINTS_FIELD_NUMBER: _ClassVar[int]
    REDEEM_MAX_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    STAFF_FIELD_NUMBER: _ClassVar[int]
    REGISTER_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    customer: CustomerRef
    lines: _containers.RepeatedCompositeFieldContainer[Line]
    redeem_points: int
    redeem_max: bool
    occurred_at: _timestamp_pb2.Timestamp
    staff: Staff
    register_id: str
    receipt_number: str
    total: int
    channel: str
    def __init__(self, customer: _Optional[_Union[CustomerRef, _Mapping]] = ..., lines: _Optional[_Iterable[_Union[Line, _Mapping]]] = ..., redeem_points: _Optional[int] = ..., redeem_max: _Optional[bool] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., staff: _Optional[_Union[Staff, _Mapping]] = ..., register_id: _Optional[str] = ..., receipt_number: _Optional[str] = ..., total: _Optional[int] = ..., channel: _Optional[str] = ...) -> None: ...

class CalculateRequest(_message.Message):
    __slots__ = ("draft", "hold_ttl_s")
    DRAFT_FIELD_NUMBER: _ClassVar[int]
    HOLD_TTL_S_FIELD_NUMBER: _ClassVar[int]
    draft: ReceiptDraft
    hold_ttl_s: int
    def __init__(self, draft: _Optional[_Union[ReceiptDraft, _Mapping]] = ..., hold_ttl_s: _Optional[int] = ...) -> None: ...

class LineResult(_message.Message):
    __slots__ = ("line_id", "discount", "paid", "accrues", "points_paid")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    PAID_FIELD_NUMBER: _ClassVar[int]
    ACCRUES_FIELD_NUMBER: _ClassVar[int]
    POINTS_PAID_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    discount: int
    paid: int
    accrues: bool
    points_paid: int
    def __init__(self, line_id: _Optional[str] = ..., discount: _Optional[int] = ..., paid: _Optional[int] = ..., accrues: _Optional[bool] = ..., points_paid: _Optional[int] = ...) -> None: ...

class AppliedRule(_message.Message):
    __slots__ = ("rule_id", "amount", "reason")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    amount: int
    reason: str
    def __init__(self, rule_id: _Optional[str] = ..., amount: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class CalculateResponse(_message.Message):
    __slots__ = ("customer_id", "lines", "gross", "redeemable_base", "max_points", "limited_by", "redeemed_certificate", "redeemed_ordinary", "payable", "points_to_accrue", "tier", "balance_before", "balance_after", "applied_rules", "hold_id", "hold_expires_at", "offline", "instant_discount", "display_name", "goods_points")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    GROSS_FIELD_NUMBER: _ClassVar[int]
    REDEEMABLE_BASE_FIELD_NUMBER: _ClassVar[int]
    MAX_POINTS_FIELD_NUMBER: _ClassVar[int]
    LIMITED_BY_FIELD_NUMBER: _ClassVar[int]
    REDEEMED_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    REDEEMED_ORDINARY_FIELD_NUMBER: _ClassVar[int]
    PAYABLE_FIELD_NUMBER: _ClassVar[int]
    POINTS_TO_ACCRUE_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    BALANCE_BEFORE_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AFTER_FIELD_NUMBER: _ClassVar[int]
    APPLIED_RULES_FIELD_NUMBER: _ClassVar[int]
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    HOLD_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_FIELD_NUMBER: _ClassVar[int]
    INSTANT_DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    GOODS_POINTS_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    lines: _containers.RepeatedCompositeFieldContainer[LineResult]
    gross: int
    redeemable_base: int
    max_points: int
    limited_by: str
    redeemed_certificate: int
    redeemed_ordinary: int
    payable: int
    points_to_accrue: int
    tier: str
    balance_before: int
    balance_after: int
    applied_rules: _containers.RepeatedCompositeFieldContainer[AppliedRule]
    hold_id: str
    hold_expires_at: _timestamp_pb2.Timestamp
    offline: bool
    instant_discount: int
    display_name: str
    goods_points: int
    def __init__(self, customer_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[LineResult, _Mapping]]] = ..., gross: _Optional[int] = ..., redeemable_base: _Optional[int] = ..., max_points: _Optional[int] = ..., limited_by: _Optional[str] = ..., redeemed_certificate: _Optional[int] = ..., redeemed_ordinary: _Optional[int] = ..., payable: _Optional[int] = ..., points_to_accrue: _Optional[int] = ..., tier: _Optional[str] = ..., balance_before: _Optional[int] = ..., balance_after: _Optional[int] = ..., applied_rules: _Optional[_Iterable[_Union[AppliedRule, _Mapping]]] = ..., hold_id: _Optional[str] = ..., hold_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., offline: _Optional[bool] = ..., instant_discount: _Optional[int] = ..., display_name: _Optional[str] = ..., goods_points: _Optional[int] = ...) -> None: ...

class Expected(_message.Message):
    __slots__ = ("redeemed_points", "line_discounts", "points_to_accrue")
    class LineDiscountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    REDEEMED_POINTS_FIELD_NUMBER: _ClassVar[int]
    LINE_DISCOUNTS_FIELD_NUMBER: _ClassVar[int]
    POINTS_TO_ACCRUE_FIELD_NUMBER: _ClassVar[int]
    redeemed_points: int
    line_discounts: _containers.ScalarMap[str, int]
    points_to_accrue: int
    def __init__(self, redeemed_points: _Optional[int] = ..., line_discounts: _Optional[_Mapping[str, int]] = ..., points_to_accrue: _Optional[int] = ...) -> None: ...

class CommitRequest(_message.Message):
    __slots__ = ("idempotency_key", "draft", "hold_id", "expected", "offline")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    DRAFT_FIELD_NUMBER: _ClassVar[int]
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    draft: ReceiptDraft
    hold_id: str
    expected: Expected
    offline: bool
    def __init__(self, idempotency_key: _Optional[str] = ..., draft: _Optional[_Union[ReceiptDraft, _Mapping]] = ..., hold_id: _Optional[str] = ..., expected: _Optional[_Union[Expected, _Mapping]] = ..., offline: _Optional[bool] = ...) -> None: ...

class Payout(_message.Message):
    __slots__ = ("customer_id", "kind", "level", "points")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    kind: str
    level: int
    points: int
    def __init__(self, customer_id: _Optional[str] = ..., kind: _Optional[str] = ..., level: _Optional[int] = ..., points: _Optional[int] = ...) -> None: ...

class CommitResponse(_message.Message):
    __slots__ = ("operation_id", "calculation", "payouts", "tier", "balance", "debt", "replayed", "customer_unknown")
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    CALCULATION_FIELD_NUMBER: _ClassVar[int]
    PAYOUTS_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    DEBT_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    operation_id: str
    calculation: CalculateResponse
    payouts: _containers.RepeatedCompositeFieldContainer[Payout]
    tier: str
    balance: int
    debt: int
    replayed: bool
    customer_unknown: bool
    def __init__(self, operation_id: _Optional[str] = ..., calculation: _Optional[_Union[CalculateResponse, _Mapping]] = ..., payouts: _Optional[_Iterable[_Union[Payout, _Mapping]]] = ..., tier: _Optional[str] = ..., balance: _Optional[int] = ..., debt: _Optional[int] = ..., replayed: _Optional[bool] = ..., customer_unknown: _Optional[bool] = ...) -> None: ...

class RefundLine(_message.Message):
    __slots__ = ("line_id", "qty_milli")
    LINE_ID_FIELD_NUMBER: _ClassVar[int]
    QTY_MILLI_FIELD_NUMBER: _ClassVar[int]
    line_id: str
    qty_milli: int
    def __init__(self, line_id: _Optional[str] = ..., qty_milli: _Optional[int] = ...) -> None: ...

class SaleRef(_message.Message):
    __slots__ = ("operation_id", "sale_key")
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    SALE_KEY_FIELD_NUMBER: _ClassVar[int]
    operation_id: str
    sale_key: str
    def __init__(self, operation_id: _Optional[str] = ..., sale_key: _Optional[str] = ...) -> None: ...

class RefundRequest(_message.Message):
    __slots__ = ("refund_key", "sale", "full", "lines", "amount", "occurred_at", "staff", "register_id")
    REFUND_KEY_FIELD_NUMBER: _ClassVar[int]
    SALE_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    STAFF_FIELD_NUMBER: _ClassVar[int]
    REGISTER_ID_FIELD_NUMBER: _ClassVar[int]
    refund_key: str
    sale: SaleRef
    full: bool
    lines: _containers.RepeatedCompositeFieldContainer[RefundLine]
    amount: int
    occurred_at: _timestamp_pb2.Timestamp
    staff: Staff
    register_id: str
    def __init__(self, refund_key: _Optional[str] = ..., sale: _Optional[_Union[SaleRef, _Mapping]] = ..., full: _Optional[bool] = ..., lines: _Optional[_Iterable[_Union[RefundLine, _Mapping]]] = ..., amount: _Optional[int] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., staff: _Optional[_Union[Staff, _Mapping]] = ..., register_id: _Optional[str] = ...) -> None: ...

class Clawback(_message.Message):
    __slots__ = ("customer_id", "kind", "level", "points", "shortfall")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    SHORTFALL_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    kind: str
    level: int
    points: int
    shortfall: int
    def __init__(self, customer_id: _Optional[str] = ..., kind: _Optional[str] = ..., level: _Optional[int] = ..., points: _Optional[int] = ..., shortfall: _Optional[int] = ...) -> None: ...

class RefundResponse(_message.Message):
    __slots__ = ("refund_id", "operation_id", "money_refunded", "points_restored", "clawbacks", "balance", "debt", "replayed")
    REFUND_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    MONEY_REFUNDED_FIELD_NUMBER: _ClassVar[int]
    POINTS_RESTORED_FIELD_NUMBER: _ClassVar[int]
    CLAWBACKS_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    DEBT_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    refund_id: str
    operation_id: str
    money_refunded: int
    points_restored: int
    clawbacks: _containers.RepeatedCompositeFieldContainer[Clawback]
    balance: int
    debt: int
    replayed: bool
    def __init__(self, refund_id: _Optional[str] = ..., operation_id: _Optional[str] = ..., money_refunded: _Optional[int] = ..., points_restored: _Optional[int] = ..., clawbacks: _Optional[_Iterable[_Union[Clawback, _Mapping]]] = ..., balance: _Optional[int] = ..., debt: _Optional[int] = ..., replayed: _Optional[bool] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("cancel_key", "sale", "hold_id", "occurred_at", "staff", "register_id")
    CANCEL_KEY_FIELD_NUMBER: _ClassVar[int]
    SALE_FIELD_NUMBER: _ClassVar[int]
    HOLD_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    STAFF_FIELD_NUMBER: _ClassVar[int]
    REGISTER_ID_FIELD_NUMBER: _ClassVar[int]
    cancel_key: str
    sale: SaleRef
    hold_id: str
    occurred_at: _timestamp_pb2.Timestamp
    staff: Staff
    register_id: str
    def __init__(self, cancel_key: _Optional[str] = ..., sale: _Optional[_Union[SaleRef, _Mapping]] = ..., hold_id: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., staff: _Optional[_Union[Staff, _Mapping]] = ..., register_id: _Optional[str] = ...) -> None: ...

class CancelResponse(_message.Message):
    __slots__ = ("operation_id", "balance", "debt", "replayed", "points_restored", "points_removed")
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    DEBT_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    POINTS_RESTORED_FIELD_NUMBER: _ClassVar[int]
    POINTS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    operation_id: str
    balance: int
    debt: int
    replayed: bool
    points_restored: int
    points_removed: int
    def __init__(self, operation_id: _Optional[str] = ..., balance: _Optional[int] = ..., debt: _Optional[int] = ..., replayed: _Optional[bool] = ..., points_restored: _Optional[int] = ..., points_removed: _Optional[int] = ...) -> None: ...

class AttachCustomerRequest(_message.Message):
    __slots__ = ("correction_key", "sale", "draft", "occurred_at", "register_id")
    CORRECTION_KEY_FIELD_NUMBER: _ClassVar[int]
    SALE_FIELD_NUMBER: _ClassVar[int]
    DRAFT_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    REGISTER_ID_FIELD_NUMBER: _ClassVar[int]
    correction_key: str
    sale: SaleRef
    draft: ReceiptDraft
    occurred_at: _timestamp_pb2.Timestamp
    register_id: str
    def __init__(self, correction_key: _Optional[str] = ..., sale: _Optional[_Union[SaleRef, _Mapping]] = ..., draft: _Optional[_Union[ReceiptDraft, _Mapping]] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., register_id: _Optional[str] = ...) -> None: ...

class AttachCustomerResult(_message.Message):
    __slots__ = ("operation_id", "customer_id", "points_accrued", "payouts", "balance", "replayed")
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_ACCRUED_FIELD_NUMBER: _ClassVar[int]
    PAYOUTS_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    operation_id: str
    customer_id: str
    points_accrued: int
    payouts: _containers.RepeatedCompositeFieldContainer[Payout]
    balance: int
    replayed: bool
    def __init__(self, operation_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., points_accrued: _Optional[int] = ..., payouts: _Optional[_Iterable[_Union[Payout, _Mapping]]] = ..., balance: _Optional[int] = ..., replayed: _Optional[bool] = ...) -> None: ...

class EventEnvelope(_message.Message):
    __slots__ = ("event_id", "register_id", "register_seq", "commit", "refund", "cancel", "attach_customer")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTER_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    REFUND_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    ATTACH_CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    register_id: str
    register_seq: int
    commit: CommitRequest
    refund: RefundRequest
    cancel: CancelRequest
    attach_customer: AttachCustomerRequest
    def __init__(self, event_id: _Optional[str] = ..., register_id: _Optional[str] = ..., register_seq: _Optional[int] = ..., commit: _Optional[_Union[CommitRequest, _Mapping]] = ..., refund: _Optional[_Union[RefundRequest, _Mapping]] = ..., cancel: _Optional[_Union[CancelRequest, _Mapping]] = ..., attach_customer: _Optional[_Union[AttachCustomerRequest, _Mapping]] = ...) -> None: ...

class Rejection(_message.Message):
    __slots__ = ("reason", "message", "metadata", "retriable", "deferred")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    RETRIABLE_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_FIELD_NUMBER: _ClassVar[int]
    reason: str
    message: str
    metadata: _containers.ScalarMap[str, str]
    retriable: bool
    deferred: bool
    def __init__(self, reason: _Optional[str] = ..., message: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., retriable: _Optional[bool] = ..., deferred: _Optional[bool] = ...) -> None: ...

class EventAck(_message.Message):
    __slots__ = ("event_id", "register_id", "register_seq", "commit", "refund", "cancel", "rejected", "attach_customer")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTER_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    REFUND_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    ATTACH_CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    register_id: str
    register_seq: int
    commit: CommitResponse
    refund: RefundResponse
    cancel: CancelResponse
    rejected: Rejection
    attach_customer: AttachCustomerResult
    def __init__(self, event_id: _Optional[str] = ..., register_id: _Optional[str] = ..., register_seq: _Optional[int] = ..., commit: _Optional[_Union[CommitResponse, _Mapping]] = ..., refund: _Optional[_Union[RefundResponse, _Mapping]] = ..., cancel: _Optional[_Union[CancelResponse, _Mapping]] = ..., rejected: _Optional[_Union[Rejection, _Mapping]] = ..., attach_customer: _Optional[_Union[AttachCustomerResult, _Mapping]] = ...) -> None: ...

class StreamEventsRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[EventEnvelope]
    def __init__(self, events: _Optional[_Iterable[_Union[EventEnvelope, _Mapping]]] = ...) -> None: ...

class StreamEventsResponse(_message.Message):
    __slots__ = ("acks",)
    ACKS_FIELD_NUMBER: _ClassVar[int]
    acks: _containers.RepeatedCompositeFieldContainer[EventAck]
    def __init__(self, acks: _Optional[_Iterable[_Union[EventAck, _Mapping]]] = ...) -> None: ...

class GetProgramRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetProgramResponse(_message.Message):
    __slots__ = ("program_id", "version", "config_json")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    version: str
    config_json: str
    def __init__(self, program_id: _Optional[str] = ..., version: _Optional[str] = ..., config_json: _Optional[str] = ...) -> None: ...

class GetBalancesRequest(_message.Message):
    __slots__ = ("active_since", "page_size", "page_token")
    ACTIVE_SINCE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    active_since: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, active_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class BalanceEntry(_message.Message):
    __slots__ = ("customer_id", "phone", "cards", "display_name", "tier", "ordinary_points", "certificate_points", "debt", "blocked", "held_points")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    CARDS_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    ORDINARY_POINTS_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_POINTS_FIELD_NUMBER: _ClassVar[int]
    DEBT_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    HELD_POINTS_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    phone: str
    cards: _containers.RepeatedScalarFieldContainer[str]
    display_name: str
    tier: str
    ordinary_points: int
    certificate_points: int
    debt: int
    blocked: bool
    held_points: int
    def __init__(self, customer_id: _Optional[str] = ..., phone: _Optional[str] = ..., cards: _Optional[_Iterable[str]] = ..., display_name: _Optional[str] = ..., tier: _Optional[str] = ..., ordinary_points: _Optional[int] = ..., certificate_points: _Optional[int] = ..., debt: _Optional[int] = ..., blocked: _Optional[bool] = ..., held_points: _Optional[int] = ...) -> None: ...

class GetBalancesResponse(_message.Message):
    __slots__ = ("customers", "next_page_token", "snapshot_at", "program_version")
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_AT_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_VERSION_FIELD_NUMBER: _ClassVar[int]
    customers: _containers.RepeatedCompositeFieldContainer[BalanceEntry]
    next_page_token: str
    snapshot_at: _timestamp_pb2.Timestamp
    program_version: str
    def __init__(self, customers: _Optional[_Iterable[_Union[BalanceEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., snapshot_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., program_version: _Optional[str] = ...) -> None: ...

class GetReportRequest(_message.Message):
    __slots__ = ("to", "reference_discount_bp")
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_DISCOUNT_BP_FIELD_NUMBER: _ClassVar[int]
    to: _timestamp_pb2.Timestamp
    reference_discount_bp: int
    def __init__(self, to: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reference_discount_bp: _Optional[int] = ..., **kwargs) -> None: ...

class CashierFigures(_message.Message):
    __slots__ = ("cashier_id", "cashier_name", "registrations", "receipts", "receipts_with_accrual", "receipts_with_redemption", "points_issued", "points_redeemed", "refunds", "actual_discount_bp")
    CASHIER_ID_FIELD_NUMBER: _ClassVar[int]
    CASHIER_NAME_FIELD_NUMBER: _ClassVar[int]
    REGISTRATIONS_FIELD_NUMBER: _ClassVar[int]
    RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    RECEIPTS_WITH_ACCRUAL_FIELD_NUMBER: _ClassVar[int]
    RECEIPTS_WITH_REDEMPTION_FIELD_NUMBER: _ClassVar[int]
    POINTS_ISSUED_FIELD_NUMBER: _ClassVar[int]
    POINTS_REDEEMED_FIELD_NUMBER: _ClassVar[int]
    REFUNDS_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_DISCOUNT_BP_FIELD_NUMBER: _ClassVar[int]
    cashier_id: str
    cashier_name: str
    registrations: int
    receipts: int
    receipts_with_accrual: int
    receipts_with_redemption: int
    points_issued: int
    points_redeemed: int
    refunds: int
    actual_discount_bp: int
    def __init__(self, cashier_id: _Optional[str] = ..., cashier_name: _Optional[str] = ..., registrations: _Optional[int] = ..., receipts: _Optional[int] = ..., receipts_with_accrual: _Optional[int] = ..., receipts_with_redemption: _Optional[int] = ..., points_issued: _Optional[int] = ..., points_redeemed: _Optional[int] = ..., refunds: _Optional[int] = ..., actual_discount_bp: _Optional[int] = ...) -> None: ...

class ChannelFigures(_message.Message):
    __slots__ = ("channel", "new_members", "buyers", "paid")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    NEW_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    BUYERS_FIELD_NUMBER: _ClassVar[int]
    PAID_FIELD_NUMBER: _ClassVar[int]
    channel: str
    new_members: int
    buyers: int
    paid: int
    def __init__(self, channel: _Optional[str] = ..., new_members: _Optional[int] = ..., buyers: _Optional[int] = ..., paid: _Optional[int] = ...) -> None: ...

class MonthFigures(_message.Message):
    __slots__ = ("month", "churned", "base", "churn_bp")
    MONTH_FIELD_NUMBER: _ClassVar[int]
    CHURNED_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    CHURN_BP_FIELD_NUMBER: _ClassVar[int]
    month: str
    churned: int
    base: int
    churn_bp: int
    def __init__(self, month: _Optional[str] = ..., churned: _Optional[int] = ..., base: _Optional[int] = ..., churn_bp: _Optional[int] = ...) -> None: ...

class GetReportResponse(_message.Message):
    __slots__ = ("members", "buyers", "receipts", "gross", "paid", "discounts", "actual_discount_bp", "saving_vs_direct_discount", "one_time_customers", "regular_customers", "purchase_frequency_days_milli", "purchases_per_customer_milli", "purchases_per_repeat_customer_milli", "average_receipt", "revenue_per_customer", "referral_revenue", "platform_revenue", "certificates_issued", "certificate_receipts_paid", "winback_customers", "winback_paid", "reviews", "points_issued_by_source", "points_redeemed", "cashiers", "channels", "refunds", "money_refunded", "usage_overage", "months")
    class PointsIssuedBySourceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    BUYERS_FIELD_NUMBER: _ClassVar[int]
    RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    GROSS_FIELD_NUMBER: _ClassVar[int]
    PAID_FIELD_NUMBER: _ClassVar[int]
    DISCOUNTS_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_DISCOUNT_BP_FIELD_NUMBER: _ClassVar[int]
    SAVING_VS_DIRECT_DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    ONE_TIME_CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    REGULAR_CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    PURCHASE_FREQUENCY_DAYS_MILLI_FIELD_NUMBER: _ClassVar[int]
    PURCHASES_PER_CUSTOMER_MILLI_FIELD_NUMBER: _ClassVar[int]
    PURCHASES_PER_REPEAT_CUSTOMER_MILLI_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_RECEIPT_FIELD_NUMBER: _ClassVar[int]
    REVENUE_PER_CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    REFERRAL_REVENUE_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_REVENUE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATES_ISSUED_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_RECEIPTS_PAID_FIELD_NUMBER: _ClassVar[int]
    WINBACK_CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    WINBACK_PAID_FIELD_NUMBER: _ClassVar[int]
    REVIEWS_FIELD_NUMBER: _ClassVar[int]
    POINTS_ISSUED_BY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    POINTS_REDEEMED_FIELD_NUMBER: _ClassVar[int]
    CASHIERS_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    REFUNDS_FIELD_NUMBER: _ClassVar[int]
    MONEY_REFUNDED_FIELD_NUMBER: _ClassVar[int]
    USAGE_OVERAGE_FIELD_NUMBER: _ClassVar[int]
    MONTHS_FIELD_NUMBER: _ClassVar[int]
    members: int
    buyers: int
    receipts: int
    gross: int
    paid: int
    discounts: int
    actual_discount_bp: int
    saving_vs_direct_discount: int
    one_time_customers: int
    regular_customers: int
    purchase_frequency_days_milli: int
    purchases_per_customer_milli: int
    purchases_per_repeat_customer_milli: int
    average_receipt: int
    revenue_per_customer: int
    referral_revenue: int
    platform_revenue: int
    certificates_issued: int
    certificate_receipts_paid: int
    winback_customers: int
    winback_paid: int
    reviews: int
    points_issued_by_source: _containers.ScalarMap[str, int]
    points_redeemed: int
    cashiers: _containers.RepeatedCompositeFieldContainer[CashierFigures]
    channels: _containers.RepeatedCompositeFieldContainer[ChannelFigures]
    refunds: int
    money_refunded: int
    usage_overage: int
    months: _containers.RepeatedCompositeFieldContainer[MonthFigures]
    def __init__(self, members: _Optional[int] = ..., buyers: _Optional[int] = ..., receipts: _Optional[int] = ..., gross: _Optional[int] = ..., paid: _Optional[int] = ..., discounts: _Optional[int] = ..., actual_discount_bp: _Optional[int] = ..., saving_vs_direct_discount: _Optional[int] = ..., one_time_customers: _Optional[int] = ..., regular_customers: _Optional[int] = ..., purchase_frequency_days_milli: _Optional[int] = ..., purchases_per_customer_milli: _Optional[int] = ..., purchases_per_repeat_customer_milli: _Optional[int] = ..., average_receipt: _Optional[int] = ..., revenue_per_customer: _Optional[int] = ..., referral_revenue: _Optional[int] = ..., platform_revenue: _Optional[int] = ..., certificates_issued: _Optional[int] = ..., certificate_receipts_paid: _Optional[int] = ..., winback_customers: _Optional[int] = ..., winback_paid: _Optional[int] = ..., reviews: _Optional[int] = ..., points_issued_by_source: _Optional[_Mapping[str, int]] = ..., points_redeemed: _Optional[int] = ..., cashiers: _Optional[_Iterable[_Union[CashierFigures, _Mapping]]] = ..., channels: _Optional[_Iterable[_Union[ChannelFigures, _Mapping]]] = ..., refunds: _Optional[int] = ..., money_refunded: _Optional[int] = ..., usage_overage: _Optional[int] = ..., months: _Optional[_Iterable[_Union[MonthFigures, _Mapping]]] = ...) -> None: ...

class IssueGrantRequest(_message.Message):
    __slots__ = ("customer", "kind", "points", "platform", "at", "grant_key")
    CUSTOMER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    GRANT_KEY_FIELD_NUMBER: _ClassVar[int]
    customer: CustomerRef
    kind: str
    points: int
    platform: str
    at: _timestamp_pb2.Timestamp
    grant_key: str
    def __init__(self, customer: _Optional[_Union[CustomerRef, _Mapping]] = ..., kind: _Optional[str] = ..., points: _Optional[int] = ..., platform: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., grant_key: _Optional[str] = ...) -> None: ...

class IssueGrantResponse(_message.Message):
    __slots__ = ("lot_id", "points", "expires_at", "replayed")
    LOT_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    lot_id: str
    points: int
    expires_at: _timestamp_pb2.Timestamp
    replayed: bool
    def __init__(self, lot_id: _Optional[str] = ..., points: _Optional[int] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class RunJobsRequest(_message.Message):
    __slots__ = ("at",)
    AT_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RunJobsResponse(_message.Message):
    __slots__ = ("certificates_issued", "lots_expired", "points_expired", "holds_released", "reminders")
    CERTIFICATES_ISSUED_FIELD_NUMBER: _ClassVar[int]
    LOTS_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    POINTS_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    HOLDS_RELEASED_FIELD_NUMBER: _ClassVar[int]
    REMINDERS_FIELD_NUMBER: _ClassVar[int]
    certificates_issued: int
    lots_expired: int
    points_expired: int
    holds_released: int
    reminders: int
    def __init__(self, certificates_issued: _Optional[int] = ..., lots_expired: _Optional[int] = ..., points_expired: _Optional[int] = ..., holds_released: _Optional[int] = ..., reminders: _Optional[int] = ...) -> None: ...
