"""Training-framework callbacks around `gradlint.monitor`, each behind its optional extra:
`gradlint.integrations.lightning` (`pip install "gradlint[lightning]"`) and
`gradlint.integrations.transformers` (`pip install "gradlint[hf]"`). A plain loop needs neither."""
