from django.db import migrations

MOVIES = [
    ("The Shawshank Redemption", 1994), ("The Godfather", 1972), ("The Dark Knight", 2008),
    ("The Godfather Part II", 1974), ("12 Angry Men", 1957), ("Schindler's List", 1993),
    ("The Return of the King", 2003), ("Pulp Fiction", 1994), ("The Fellowship of the Ring", 2001),
    ("The Good, the Bad and the Ugly", 1966), ("Forrest Gump", 1994), ("Fight Club", 1999),
    ("Inception", 2010), ("The Two Towers", 2002), ("The Empire Strikes Back", 1980),
    ("The Matrix", 1999), ("Goodfellas", 1990), ("One Flew Over the Cuckoo's Nest", 1975),
    ("Seven Samurai", 1954), ("Se7en", 1995), ("City of God", 2002), ("Spirited Away", 2001),
    ("Interstellar", 2014), ("It's a Wonderful Life", 1946),
]


def add(apps, schema_editor):  # type: ignore[no-untyped-def]
    Movie = apps.get_model("movies", "Movie")
    Movie.objects.bulk_create(Movie(title=t, year=y) for t, y in MOVIES)


class Migration(migrations.Migration):
    dependencies = [("movies", "0001_initial")]
    operations = [migrations.RunPython(add, migrations.RunPython.noop)]
