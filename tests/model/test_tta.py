import pytest
import torch
import ttach

from foldtrain.model.tta import BatchedTTA, tta_transforms
from foldtrain.user_error import UserError


class AsymmetricNet(torch.nn.Module):
    """A model whose output changes under flips and turns, so a wrong de-augmentation would show."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.head = torch.nn.Linear(4 * 4, 5)

    def forward(self, x):
        pooled = torch.nn.functional.adaptive_avg_pool2d(self.conv(x), (2, 2))
        return self.head(pooled.flatten(1))


@pytest.mark.parametrize("policy", ["none", "hflip", "flips", "d4"])
def test_batched_tta_equals_ttach(policy: str):
    model = AsymmetricNet().eval()
    images = torch.randn(3, 3, 8, 8)
    reference = ttach.ClassificationTTAWrapper(model, tta_transforms(policy), merge_mode="mean")
    with torch.no_grad():
        expected = reference(images)
        got = BatchedTTA(model, tta_transforms(policy))(images)
        one_view_at_a_time = BatchedTTA(model, tta_transforms(policy), max_views_per_pass=1)(images)
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(one_view_at_a_time, expected, atol=1e-5)
    if policy != "none":
        assert not torch.allclose(got, model(images), atol=1e-4)  # the views did change something


def test_unknown_policy():
    with pytest.raises(UserError, match="unknown TTA policy"):
        tta_transforms("spin")
