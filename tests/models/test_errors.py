import pytest

from crossvit.models import create_model


def test_patch_size_must_divide_image():
    with pytest.raises(ValueError, match=r"model.patch_size\[0\]=14 does not divide model.img_size\[0\]=240; choose"):
        create_model("crossvit_9", patch_size=[14, 16])


def test_width_must_divide_by_heads():
    with pytest.raises(ValueError, match=r"model.embed_dim\[1\]=256 is not divisible by model.num_heads\[1\]=5"):
        create_model("crossvit_9", num_heads=[4, 5])


def test_per_branch_lists_must_agree():
    with pytest.raises(ValueError, match=r"model.embed_dim has 3 entries but model.patch_size has 2"):
        create_model("crossvit_9", embed_dim=[128, 256, 512])
    with pytest.raises(ValueError, match=r"model.depth\[1\]=\[1\] has 1 entries but there are 2 branches"):
        create_model("crossvit_9", depth=[[1, 3], [1]])


def test_multi_conv_needs_a_known_patch_size():
    with pytest.raises(ValueError, match=r"model.multi_conv=true .* model.patch_size\[0\]=8"):
        create_model("crossvit_9_dagger", patch_size=[8, 16])


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match=r"model='crossvit_99' .* choose one of \[.*'crossvit_18'"):
        create_model("crossvit_99")
    with pytest.raises(ValueError, match=r"fusion='cross' .* choose one of \[.*'cross_attention'"):
        create_model("crossvit_9", fusion="cross")
    with pytest.raises(ValueError, match=r"not keys of model/crossvit_9.yaml"):
        create_model("crossvit_9", patchsize=[12, 16])
