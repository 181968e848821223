from django.urls import path

from movies import views

urlpatterns = [
    path("movie", views.movie_list),
    path("slow", views.slow),
    path("version", views.version),
]
