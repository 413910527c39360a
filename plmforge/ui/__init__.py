"""`plmforge ui`: the web UI (Gradio). `forms` (the training form from the config dataclasses), `jobs`
(training processes and the runs directory) and `views` (what is drawn) import no gradio; `app` builds
the page from them."""
