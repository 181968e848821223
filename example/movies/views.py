import time

from django.http import HttpRequest, JsonResponse

from movies.models import Movie

VERSION = "1"


def movie_list(request: HttpRequest) -> JsonResponse:
    movies = [{"title": m.title, "year": m.year} for m in Movie.objects.all()]
    return JsonResponse({"version": VERSION, "count": len(movies), "movies": movies})


def version(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"version": VERSION})


def slow(request: HttpRequest) -> JsonResponse:
    seconds = min(float(request.GET.get("s", "2")), 30.0)
    time.sleep(seconds)
    return JsonResponse({"version": VERSION, "slept": seconds})
