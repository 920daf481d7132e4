"""sniffwrites explains a failed start by what the feature probe answered,
for every answer it can give: absent (a newer kernel is needed) and refused
(privileges or a policy stand in the way) are different advice."""

import pytest

from sniffwrites import cli


@pytest.mark.parametrize("feature", cli.NEEDED_FEATURES)
def test_the_reason_follows_the_probe_answer(feature, probe_says):
    found = probe_says(feature)
    message = cli.missing_feature()
    if probe_says.state == "host":
        unavailable = [name for name in cli.NEEDED_FEATURES if not found.answer(name).available]
        assert (message is None) == (not unavailable)
        return
    if probe_says.state == "absent":
        assert message.startswith("this kernel lacks %s (added in Linux " % feature)
    elif probe_says.state == "refused":
        assert message.startswith("this kernel has %s but refuses it to sniffwrites (forced "
                                  "by the test)" % feature)
        assert "capabilities" in message and "policy" in message
    else:
        others = [name for name in cli.NEEDED_FEATURES
                  if name != feature and not found.answer(name).available]
        assert (message is None) == (not others)
