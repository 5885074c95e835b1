"""The service description 1C imports as a WS-reference (pure).

Hand-written, one document, inline schema. Compatible with the Manzana POS processing service
(the same target namespace, service ``POSProcessing``, port and binding ``POSProcessingSoap``,
operation ``ProcessRequest`` with its soapAction, element and type names and types), reduced to
what this gateway reads and answers: no OfferRequest/OfferResponse, no coupons issued, one SOAP
1.1 port (SOAP 1.2 requests are still answered in kind). Every element we may send is declared
optional where the original is, in the original order, so a 1C module built on the original
description reads our answers and one built on ours reads Manzana's.

Invariant: byte-stable for a given ``public_url`` (a golden test holds it); a change a static
WS-reference could not read is a new path, never an edit here.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

NS = "http://loyalty.manzanagroup.ru/loyalty.xsd"
SOAP_ACTION = NS + "/ProcessRequest"


def _money(*names: str, required: bool = False) -> str:
    low = "1" if required else "0"
    return "".join(
        f'<xs:element minOccurs="{low}" maxOccurs="1" name="{n}" type="xs:decimal"/>\n' for n in names
    )


def _text(*names: str) -> str:
    return "".join(f'<xs:element minOccurs="0" maxOccurs="1" name="{n}" type="xs:string"/>\n' for n in names)


SCHEMA = f"""<xs:schema targetNamespace="{NS}" elementFormDefault="qualified">
<xs:element name="ProcessRequest">
<xs:complexType><xs:sequence>
<xs:element minOccurs="0" maxOccurs="1" name="request"><xs:complexType><xs:sequence>
<xs:choice minOccurs="0" maxOccurs="unbounded">
<xs:element minOccurs="0" maxOccurs="1" name="BalanceRequest" type="tns:RequestBase"/>
<xs:element minOccurs="0" maxOccurs="1" name="ChequeRequest" type="tns:Cheque"/>
</xs:choice>
</xs:sequence></xs:complexType></xs:element>
<xs:element minOccurs="0" maxOccurs="1" name="orgName" type="xs:string"/>
</xs:sequence></xs:complexType>
</xs:element>
<xs:element name="ProcessRequestResponse">
<xs:complexType><xs:sequence>
<xs:element minOccurs="0" maxOccurs="1" name="ProcessRequestResult"><xs:complexType><xs:sequence>
<xs:choice minOccurs="0" maxOccurs="unbounded">
<xs:element minOccurs="0" maxOccurs="1" name="BalanceResponse" type="tns:BalanceResponseBase"/>
<xs:element minOccurs="0" maxOccurs="1" name="ChequeResponse" type="tns:ChequeResponseBase"/>
</xs:choice>
</xs:sequence></xs:complexType></xs:element>
</xs:sequence></xs:complexType>
</xs:element>
<xs:simpleType name="ChequeType"><xs:restriction base="xs:string">
<xs:enumeration value="Fiscal"/><xs:enumeration value="Soft"/>
</xs:restriction></xs:simpleType>
<xs:simpleType name="OperationType"><xs:restriction base="xs:string">
<xs:enumeration value="Sale"/><xs:enumeration value="Return"/><xs:enumeration value="Rollback"/>
</xs:restriction></xs:simpleType>
<xs:complexType name="Card"><xs:sequence><xs:choice minOccurs="1" maxOccurs="1">
{_text("MobilePhone", "Track2", "Tracks", "CardNumber")}</xs:choice></xs:sequence></xs:complexType>
<xs:complexType name="ChequeReference"><xs:sequence>
{_text("Organization", "BusinessUnit", "POS", "Number")}\
<xs:element minOccurs="1" maxOccurs="1" name="DateTime" type="xs:dateTime"/>
</xs:sequence></xs:complexType>
<xs:complexType name="TransactionReference"><xs:sequence>
<xs:element minOccurs="0" maxOccurs="1" name="TransactionID" type="xs:integer"/>
</xs:sequence></xs:complexType>
<xs:complexType name="RequestBase"><xs:sequence>
{_text("RequestID")}\
<xs:element minOccurs="0" maxOccurs="1" name="Card" type="tns:Card"/>
<xs:element minOccurs="1" maxOccurs="1" name="DateTime" type="xs:dateTime"/>
{_text("Organization", "BusinessUnit", "POS")}\
<xs:element minOccurs="0" maxOccurs="1" name="ChequeReference" type="tns:ChequeReference"/>
<xs:element minOccurs="0" maxOccurs="1" name="TransactionReference" type="tns:TransactionReference"/>
</xs:sequence></xs:complexType>
<xs:complexType name="Payment"><xs:sequence>
{_text("ID")}{_money("Value", required=True)}</xs:sequence></xs:complexType>
<xs:complexType name="Coupon"><xs:sequence>
{_text("Number", "EmissionID", "TypeID", "ApplicabilityMessage", "ApplicabilityCode")}\
</xs:sequence></xs:complexType>
<xs:complexType name="Coupons"><xs:sequence>
<xs:element minOccurs="0" maxOccurs="unbounded" name="Coupon" type="tns:Coupon"/>
</xs:sequence></xs:complexType>
<xs:complexType name="ExtendedAttributes"><xs:sequence>
{_text("Key", "Value")}</xs:sequence></xs:complexType>
<xs:complexType name="ChequeItem"><xs:sequence>
<xs:element minOccurs="0" maxOccurs="1" name="PositionNumber" type="xs:nonNegativeInteger"/>
{_text("Article", "ArticleName")}\
{_money("Price", "Quantity", "Summ", "Discount", "SummDiscounted", required=True)}\
{_money("AvailablePayment", "ChargedBonus", "WriteoffBonus", "ActiveChargedBonus")}\
<xs:element minOccurs="0" maxOccurs="unbounded" name="ExtendedAttribute" type="tns:ExtendedAttributes"/>
</xs:sequence></xs:complexType>
<xs:complexType name="Cheque"><xs:complexContent mixed="false"><xs:extension base="tns:RequestBase">
<xs:sequence>
{_text("Number")}\
<xs:element minOccurs="1" maxOccurs="1" name="OperationType" type="tns:OperationType"/>
<xs:element minOccurs="0" maxOccurs="unbounded" name="Payment" type="tns:Payment"/>
{_money("Summ", "Discount", "SummDiscounted", required=True)}{_money("PaidByBonus")}\
<xs:element minOccurs="0" maxOccurs="1" name="Coupons" type="tns:Coupons"/>
<xs:element minOccurs="0" maxOccurs="unbounded" name="ExtendedAttribute" type="tns:ExtendedAttributes"/>
<xs:element minOccurs="0" maxOccurs="unbounded" name="Item" type="tns:ChequeItem"/>
</xs:sequence>
<xs:attribute name="ChequeType" type="tns:ChequeType"/>
</xs:extension></xs:complexContent></xs:complexType>
<xs:complexType name="ResponseBase"><xs:sequence>
<xs:element minOccurs="0" maxOccurs="1" name="TransactionID" type="xs:integer"/>
{_text("RequestID")}\
<xs:element minOccurs="1" maxOccurs="1" name="Processed" type="xs:dateTime"/>
<xs:element minOccurs="0" maxOccurs="1" name="ReturnCode" type="xs:integer"/>
{_text("Message")}</xs:sequence></xs:complexType>
<xs:complexType name="BalanceResponseBase"><xs:complexContent mixed="false">\
<xs:extension base="tns:ResponseBase">
<xs:sequence>
{_text("CardNumber")}{
    _money("CardBalance", "CardActiveBalance", "CardSumm", "CardSummDiscounted", "CardDiscount")
}\
{_text("LevelName")}<xs:element minOccurs="0" maxOccurs="1" name="CardQuantity" type="xs:integer"/>
{
    _text(
        "CashierMessage",
        "CashierMessage2",
        "ChequeMessage",
        "ChequeMessage2",
        "PersonalMessage",
        "PersonalMessage2",
        "FirstName",
        "LastName",
        "MiddleName",
        "FullName",
    )
}\
<xs:element minOccurs="0" maxOccurs="1" name="BirthDate" type="xs:date"/>
<xs:element minOccurs="0" maxOccurs="1" name="Age" type="xs:integer"/>
{_text("Phone", "Email")}</xs:sequence>
</xs:extension></xs:complexContent></xs:complexType>
<xs:complexType name="ChequeResponseBase"><xs:complexContent mixed="false">\
<xs:extension base="tns:BalanceResponseBase">
<xs:sequence>
{
    _money(
        "Summ",
        "Discount",
        "SummDiscounted",
        "ChargedBonus",
        "ActiveChargedBonus",
        "AvailablePayment",
        "WriteoffBonus",
    )
}\
<xs:element minOccurs="0" maxOccurs="1" name="Coupons" type="tns:Coupons"/>
<xs:element minOccurs="0" maxOccurs="unbounded" name="Item" type="tns:ChequeItem"/>
</xs:sequence>
</xs:extension></xs:complexContent></xs:complexType>
</xs:schema>
"""

DEFINITIONS = f"""<?xml version="1.0" encoding="utf-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" \
xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:xs="http://www.w3.org/2001/XMLSchema" \
xmlns:tns="{NS}" targetNamespace="{NS}">
<wsdl:documentation>posgw loyalty gateway: ProcessRequest (ChequeRequest Soft = calculate, Fiscal = commit; \
BalanceRequest), answered in the Manzana POS processing shape.</wsdl:documentation>
<wsdl:types>
{SCHEMA}</wsdl:types>
<wsdl:message name="ProcessRequestSoapIn">\
<wsdl:part name="parameters" element="tns:ProcessRequest"/></wsdl:message>
<wsdl:message name="ProcessRequestSoapOut">\
<wsdl:part name="parameters" element="tns:ProcessRequestResponse"/></wsdl:message>
<wsdl:portType name="POSProcessingSoap">
<wsdl:operation name="ProcessRequest">
<wsdl:input message="tns:ProcessRequestSoapIn"/><wsdl:output message="tns:ProcessRequestSoapOut"/>
</wsdl:operation>
</wsdl:portType>
<wsdl:binding name="POSProcessingSoap" type="tns:POSProcessingSoap">
<soap:binding transport="http://schemas.xmlsoap.org/soap/http"/>
<wsdl:operation name="ProcessRequest">
<soap:operation soapAction="{SOAP_ACTION}" style="document"/>
<wsdl:input><soap:body use="literal"/></wsdl:input><wsdl:output><soap:body use="literal"/></wsdl:output>
</wsdl:operation>
</wsdl:binding>
<wsdl:service name="POSProcessing">
<wsdl:port name="POSProcessingSoap" binding="tns:POSProcessingSoap">
<soap:address location=@ADDRESS@/>
</wsdl:port>
</wsdl:service>
</wsdl:definitions>
"""


def render(public_url: str) -> bytes:
    """The WSDL whose ``soap:address`` is ``public_url`` (the configured URL, never the Host)."""
    return DEFINITIONS.replace("@ADDRESS@", quoteattr(public_url)).encode("utf-8")
