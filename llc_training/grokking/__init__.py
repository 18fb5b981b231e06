"""The modular-addition grokking anchor: data and seed search (`mod_add`); the study is `studies.grokking`."""
