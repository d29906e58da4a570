"""Serving models with features from the store.

* :mod:`ladle.serving.features`: a feature service read for many requests at once, through the SDK
  (:class:`~ladle.store.FeatureStore`) or a running feature server (:class:`~ladle.client.RemoteClient`);
* :mod:`ladle.serving.scoring`: requests → one feature read → the model → one answer per request;
* :mod:`ladle.serving.linear`: a linear model saved as JSON (the tutorial's OLS);
* :mod:`ladle.serving.ray_serve`: a Ray Serve deployment batching feature reads across concurrent
  requests (needs ``pip install 'ladle[serve]'``).

See docs/deploy.md, "Serving a model with Ray Serve".
"""
