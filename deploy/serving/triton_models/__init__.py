"""The model.py files Triton's python backend runs, copied into the repository by
`deploy.serving.repository` (REPO/NAME_preprocess/1/model.py, and REPO/NAME/1/model.py for
`--platform python`). They import `triton_python_backend_utils`, which exists only inside
Triton's stub interpreter: nothing in deploy imports them."""
