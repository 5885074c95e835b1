"""simulators.core.sms: the SMS.ru adapter against the SMS.ru simulator, and picking a sender."""

from __future__ import annotations

import pytest

from simulators.core.sms import DebugSender, SmsError, SmsRu, deliver, from_environ
from simulators.sms.smsru import Faults, SmsRuSimulator, serving


async def test_accepted_refused_and_wrong_numbers() -> None:
    sim = SmsRuSimulator("key")
    async with serving(sim) as url:
        assert await SmsRu("key", url).send("+79031234567", "Код: 1234")
        assert sim.inbox == {"79031234567": ["Код: 1234"]}
        with pytest.raises(SmsError, match="200"):  # a wrong api_id
            await SmsRu("other", url).send("+79031234567", "x")
        with pytest.raises(SmsError, match="202"):  # not a number SMS.ru can text
            await SmsRu("key", url).send("+1234", "x")
        sim.faults = Faults(down=True)
        assert "HTTP 503" in await deliver(SmsRu("key", url), "+79031234567", "x", 2.0)
        sim.faults = Faults(delay_s=30.0)
        assert "did not answer" in await deliver(SmsRu("key", url), "+79031234567", "x", 0.2)


async def test_an_unreachable_provider_is_not_sent() -> None:
    assert "unreachable" in await deliver(SmsRu("key", "http://127.0.0.1:9"), "+79031234567", "x", 2.0)


def test_the_sender_comes_from_the_environment() -> None:
    assert isinstance(from_environ({}), DebugSender)
    picked = from_environ({"POSGW_CORE_SMS_PROVIDER": "smsru", "POSGW_CORE_SMS_API_ID": "k",
                           "POSGW_CORE_SMS_URL": "http://127.0.0.1:1"})
    assert isinstance(picked, SmsRu) and (picked.api_id, picked.base_url) == ("k", "http://127.0.0.1:1")
    with pytest.raises(ValueError, match="API_ID"):
        from_environ({"POSGW_CORE_SMS_PROVIDER": "smsru"})
    with pytest.raises(ValueError, match="smsru"):
        from_environ({"POSGW_CORE_SMS_PROVIDER": "twilio"})
