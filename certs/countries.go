// This file is long for a reason: most of it is data, the ISO 3166-1 table
// (countries, at the bottom) that csr validates the subject's country against
// and suggests from; the code above the table is short.

package certs

import (
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/levenshtein"
)

// Country is one ISO 3166-1 entry.
type Country struct {
	Code   string // alpha-2, what goes in a certificate subject: "DE"
	Alpha3 string // alpha-3: "DEU"
	Name   string // short English name: "Germany"
	// other holds further names to match suggestions against (the ISO
	// short name when Name is the common one, the official name),
	// separated by "|".
	other string
}

// LookupCountry returns the country with the given alpha-2 code (any case).
func LookupCountry(code string) (Country, bool) {
	code = strings.ToUpper(strings.TrimSpace(code))
	i, ok := slices.BinarySearchFunc(countries, code, func(c Country, code string) int {
		return strings.Compare(c.Code, code)
	})
	if !ok {
		return Country{}, false
	}
	return countries[i], true
}

// CountryError is a country that is not an ISO 3166-1 alpha-2 code, with
// the codes the operator probably meant.
type CountryError struct {
	Input       string
	Suggestions []Country // best first; empty when nothing is close
}

func (e *CountryError) Error() string {
	msg := fmt.Sprintf("country %q is not an ISO 3166-1 alpha-2 code", e.Input)
	switch len(e.Suggestions) {
	case 0:
		return msg + ": give the two-letter code of the country, such as DE, FR, GB, NL or US"
	case 1:
		c := e.Suggestions[0]
		return fmt.Sprintf("%s; did you mean %s (%s)?", msg, c.Code, c.Name)
	}
	var parts []string
	for _, c := range e.Suggestions {
		parts = append(parts, fmt.Sprintf("%s (%s)", c.Code, c.Name))
	}
	return fmt.Sprintf("%s; did you mean one of %s?", msg, strings.Join(parts, ", "))
}

// NormalizeCountry returns the ISO 3166-1 alpha-2 code for input, upper
// case, or a *CountryError listing near matches: "UK" suggests GB, "GER"
// and "DEU" suggest DE, "Germany" suggests DE.
func NormalizeCountry(input string) (string, error) {
	code := strings.ToUpper(strings.TrimSpace(input))
	if c, ok := LookupCountry(code); ok {
		return c.Code, nil
	}
	return "", &CountryError{Input: input, Suggestions: SuggestCountries(input)}
}

// maxSuggestions bounds the list a wrong country gets.
const maxSuggestions = 6

// SuggestCountries returns the countries input probably means: a known
// alias (UK, EL, IOC codes...), an alpha-3 code, a name or a word of a name
// it starts, a name it misspells, or its two letters swapped.
func SuggestCountries(input string) []Country {
	s := strings.ToUpper(strings.TrimSpace(input))
	if s == "" {
		return nil
	}
	var out []Country
	add := func(code string) {
		c, ok := LookupCountry(code)
		if ok && !slices.Contains(out, c) && len(out) < maxSuggestions {
			out = append(out, c)
		}
	}
	if code, ok := countryAliases[s]; ok {
		add(code)
	}
	for _, c := range countries {
		if c.Alpha3 == s {
			add(c.Code)
		}
	}
	if len(s) == 2 {
		add(string([]byte{s[1], s[0]}))
	}
	if len(s) >= 3 {
		for _, match := range []func(name, s string) bool{nameIs, nameWordStarts, nameMisspelt} {
			for _, c := range countries {
				if slices.ContainsFunc(c.names(), func(name string) bool { return match(name, s) }) {
					add(c.Code)
				}
			}
		}
	}
	return out
}

// names returns c's names in upper case.
func (c Country) names() []string {
	names := []string{strings.ToUpper(c.Name)}
	if c.other != "" {
		for _, n := range strings.Split(c.other, "|") {
			names = append(names, strings.ToUpper(n))
		}
	}
	return names
}

func nameIs(name, s string) bool { return name == s }

func nameWordStarts(name, s string) bool {
	for _, w := range strings.FieldsFunc(name, func(r rune) bool { return !unicode.IsLetter(r) }) {
		if strings.HasPrefix(w, s) {
			return true
		}
	}
	return false
}

// nameMisspelt allows one typo in a short name and two in a longer one.
func nameMisspelt(name, s string) bool {
	limit := 1
	if len(s) >= 6 {
		limit = 2
	}
	return len(s) >= 4 && levenshtein.Distance(name, s) <= limit
}

// countryAliases are codes and names people use that are not ISO 3166-1
// alpha-2 codes or names.
var countryAliases = map[string]string{
	"UK":          "GB", // reserved by ISO at the UK's request; the UK's code is GB
	"EL":          "GR", // the EU's code for Greece
	"ENGLAND":     "GB",
	"SCOTLAND":    "GB",
	"WALES":       "GB",
	"BRITAIN":     "GB",
	"ENG":         "GB",
	"GER":         "DE", // IOC and FIFA codes, often typed for the alpha-2 code
	"DEUTSCHLAND": "DE",
	"SUI":         "CH",
	"NED":         "NL",
	"HOLLAND":     "NL",
	"POR":         "PT",
	"DEN":         "DK",
	"CRO":         "HR",
	"GRE":         "GR",
	"RSA":         "ZA",
	"UAE":         "AE",
	"KSA":         "SA",
	"TURKEY":      "TR",
	"AMERICA":     "US",
}

// countries is ISO 3166-1 as published in Debian's iso-codes 4.15.0, sorted
// by alpha-2 code (LookupCountry searches it by bisection).
var countries = []Country{
	{"AD", "AND", "Andorra", "Principality of Andorra"},
	{"AE", "ARE", "United Arab Emirates", ""},
	{"AF", "AFG", "Afghanistan", "Islamic Republic of Afghanistan"},
	{"AG", "ATG", "Antigua and Barbuda", ""},
	{"AI", "AIA", "Anguilla", ""},
	{"AL", "ALB", "Albania", "Republic of Albania"},
	{"AM", "ARM", "Armenia", "Republic of Armenia"},
	{"AO", "AGO", "Angola", "Republic of Angola"},
	{"AQ", "ATA", "Antarctica", ""},
	{"AR", "ARG", "Argentina", "Argentine Republic"},
	{"AS", "ASM", "American Samoa", ""},
	{"AT", "AUT", "Austria", "Republic of Austria"},
	{"AU", "AUS", "Australia", ""},
	{"AW", "ABW", "Aruba", ""},
	{"AX", "ALA", "Åland Islands", ""},
	{"AZ", "AZE", "Azerbaijan", "Republic of Azerbaijan"},
	{"BA", "BIH", "Bosnia and Herzegovina", "Republic of Bosnia and Herzegovina"},
	{"BB", "BRB", "Barbados", ""},
	{"BD", "BGD", "Bangladesh", "People's Republic of Bangladesh"},
	{"BE", "BEL", "Belgium", "Kingdom of Belgium"},
	{"BF", "BFA", "Burkina Faso", ""},
	{"BG", "BGR", "Bulgaria", "Republic of Bulgaria"},
	{"BH", "BHR", "Bahrain", "Kingdom of Bahrain"},
	{"BI", "BDI", "Burundi", "Republic of Burundi"},
	{"BJ", "BEN", "Benin", "Republic of Benin"},
	{"BL", "BLM", "Saint Barthélemy", ""},
	{"BM", "BMU", "Bermuda", ""},
	{"BN", "BRN", "Brunei Darussalam", ""},
	{"BO", "BOL", "Bolivia", "Bolivia, Plurinational State of|Plurinational State of Bolivia"},
	{"BQ", "BES", "Bonaire, Sint Eustatius and Saba", ""},
	{"BR", "BRA", "Brazil", "Federative Republic of Brazil"},
	{"BS", "BHS", "Bahamas", "Commonwealth of the Bahamas"},
	{"BT", "BTN", "Bhutan", "Kingdom of Bhutan"},
	{"BV", "BVT", "Bouvet Island", ""},
	{"BW", "BWA", "Botswana", "Republic of Botswana"},
	{"BY", "BLR", "Belarus", "Republic of Belarus"},
	{"BZ", "BLZ", "Belize", ""},
	{"CA", "CAN", "Canada", ""},
	{"CC", "CCK", "Cocos (Keeling) Islands", ""},
	{"CD", "COD", "Congo, The Democratic Republic of the", ""},
	{"CF", "CAF", "Central African Republic", ""},
	{"CG", "COG", "Congo", "Republic of the Congo"},
	{"CH", "CHE", "Switzerland", "Swiss Confederation"},
	{"CI", "CIV", "Côte d'Ivoire", "Republic of Côte d'Ivoire"},
	{"CK", "COK", "Cook Islands", ""},
	{"CL", "CHL", "Chile", "Republic of Chile"},
	{"CM", "CMR", "Cameroon", "Republic of Cameroon"},
	{"CN", "CHN", "China", "People's Republic of China"},
	{"CO", "COL", "Colombia", "Republic of Colombia"},
	{"CR", "CRI", "Costa Rica", "Republic of Costa Rica"},
	{"CU", "CUB", "Cuba", "Republic of Cuba"},
	{"CV", "CPV", "Cabo Verde", "Republic of Cabo Verde"},
	{"CW", "CUW", "Curaçao", ""},
	{"CX", "CXR", "Christmas Island", ""},
	{"CY", "CYP", "Cyprus", "Republic of Cyprus"},
	{"CZ", "CZE", "Czechia", "Czech Republic"},
	{"DE", "DEU", "Germany", "Federal Republic of Germany"},
	{"DJ", "DJI", "Djibouti", "Republic of Djibouti"},
	{"DK", "DNK", "Denmark", "Kingdom of Denmark"},
	{"DM", "DMA", "Dominica", "Commonwealth of Dominica"},
	{"DO", "DOM", "Dominican Republic", ""},
	{"DZ", "DZA", "Algeria", "People's Democratic Republic of Algeria"},
	{"EC", "ECU", "Ecuador", "Republic of Ecuador"},
	{"EE", "EST", "Estonia", "Republic of Estonia"},
	{"EG", "EGY", "Egypt", "Arab Republic of Egypt"},
	{"EH", "ESH", "Western Sahara", ""},
	{"ER", "ERI", "Eritrea", "the State of Eritrea"},
	{"ES", "ESP", "Spain", "Kingdom of Spain"},
	{"ET", "ETH", "Ethiopia", "Federal Democratic Republic of Ethiopia"},
	{"FI", "FIN", "Finland", "Republic of Finland"},
	{"FJ", "FJI", "Fiji", "Republic of Fiji"},
	{"FK", "FLK", "Falkland Islands (Malvinas)", ""},
	{"FM", "FSM", "Micronesia, Federated States of", "Federated States of Micronesia"},
	{"FO", "FRO", "Faroe Islands", ""},
	{"FR", "FRA", "France", "French Republic"},
	{"GA", "GAB", "Gabon", "Gabonese Republic"},
	{"GB", "GBR", "United Kingdom", "United Kingdom of Great Britain and Northern Ireland"},
	{"GD", "GRD", "Grenada", ""},
	{"GE", "GEO", "Georgia", ""},
	{"GF", "GUF", "French Guiana", ""},
	{"GG", "GGY", "Guernsey", ""},
	{"GH", "GHA", "Ghana", "Republic of Ghana"},
	{"GI", "GIB", "Gibraltar", ""},
	{"GL", "GRL", "Greenland", ""},
	{"GM", "GMB", "Gambia", "Republic of the Gambia"},
	{"GN", "GIN", "Guinea", "Republic of Guinea"},
	{"GP", "GLP", "Guadeloupe", ""},
	{"GQ", "GNQ", "Equatorial Guinea", "Republic of Equatorial Guinea"},
	{"GR", "GRC", "Greece", "Hellenic Republic"},
	{"GS", "SGS", "South Georgia and the South Sandwich Islands", ""},
	{"GT", "GTM", "Guatemala", "Republic of Guatemala"},
	{"GU", "GUM", "Guam", ""},
	{"GW", "GNB", "Guinea-Bissau", "Republic of Guinea-Bissau"},
	{"GY", "GUY", "Guyana", "Republic of Guyana"},
	{"HK", "HKG", "Hong Kong", "Hong Kong Special Administrative Region of China"},
	{"HM", "HMD", "Heard Island and McDonald Islands", ""},
	{"HN", "HND", "Honduras", "Republic of Honduras"},
	{"HR", "HRV", "Croatia", "Republic of Croatia"},
	{"HT", "HTI", "Haiti", "Republic of Haiti"},
	{"HU", "HUN", "Hungary", ""},
	{"ID", "IDN", "Indonesia", "Republic of Indonesia"},
	{"IE", "IRL", "Ireland", ""},
	{"IL", "ISR", "Israel", "State of Israel"},
	{"IM", "IMN", "Isle of Man", ""},
	{"IN", "IND", "India", "Republic of India"},
	{"IO", "IOT", "British Indian Ocean Territory", ""},
	{"IQ", "IRQ", "Iraq", "Republic of Iraq"},
	{"IR", "IRN", "Iran", "Iran, Islamic Republic of|Islamic Republic of Iran"},
	{"IS", "ISL", "Iceland", "Republic of Iceland"},
	{"IT", "ITA", "Italy", "Italian Republic"},
	{"JE", "JEY", "Jersey", ""},
	{"JM", "JAM", "Jamaica", ""},
	{"JO", "JOR", "Jordan", "Hashemite Kingdom of Jordan"},
	{"JP", "JPN", "Japan", ""},
	{"KE", "KEN", "Kenya", "Republic of Kenya"},
	{"KG", "KGZ", "Kyrgyzstan", "Kyrgyz Republic"},
	{"KH", "KHM", "Cambodia", "Kingdom of Cambodia"},
	{"KI", "KIR", "Kiribati", "Republic of Kiribati"},
	{"KM", "COM", "Comoros", "Union of the Comoros"},
	{"KN", "KNA", "Saint Kitts and Nevis", ""},
	{"KP", "PRK", "North Korea", "Korea, Democratic People's Republic of|Democratic People's Republic of Korea"},
	{"KR", "KOR", "South Korea", "Korea, Republic of"},
	{"KW", "KWT", "Kuwait", "State of Kuwait"},
	{"KY", "CYM", "Cayman Islands", ""},
	{"KZ", "KAZ", "Kazakhstan", "Republic of Kazakhstan"},
	{"LA", "LAO", "Laos", "Lao People's Democratic Republic"},
	{"LB", "LBN", "Lebanon", "Lebanese Republic"},
	{"LC", "LCA", "Saint Lucia", ""},
	{"LI", "LIE", "Liechtenstein", "Principality of Liechtenstein"},
	{"LK", "LKA", "Sri Lanka", "Democratic Socialist Republic of Sri Lanka"},
	{"LR", "LBR", "Liberia", "Republic of Liberia"},
	{"LS", "LSO", "Lesotho", "Kingdom of Lesotho"},
	{"LT", "LTU", "Lithuania", "Republic of Lithuania"},
	{"LU", "LUX", "Luxembourg", "Grand Duchy of Luxembourg"},
	{"LV", "LVA", "Latvia", "Republic of Latvia"},
	{"LY", "LBY", "Libya", ""},
	{"MA", "MAR", "Morocco", "Kingdom of Morocco"},
	{"MC", "MCO", "Monaco", "Principality of Monaco"},
	{"MD", "MDA", "Moldova", "Moldova, Republic of|Republic of Moldova"},
	{"ME", "MNE", "Montenegro", ""},
	{"MF", "MAF", "Saint Martin (French part)", ""},
	{"MG", "MDG", "Madagascar", "Republic of Madagascar"},
	{"MH", "MHL", "Marshall Islands", "Republic of the Marshall Islands"},
	{"MK", "MKD", "North Macedonia", "Republic of North Macedonia"},
	{"ML", "MLI", "Mali", "Republic of Mali"},
	{"MM", "MMR", "Myanmar", "Republic of Myanmar"},
	{"MN", "MNG", "Mongolia", ""},
	{"MO", "MAC", "Macao", "Macao Special Administrative Region of China"},
	{"MP", "MNP", "Northern Mariana Islands", "Commonwealth of the Northern Mariana Islands"},
	{"MQ", "MTQ", "Martinique", ""},
	{"MR", "MRT", "Mauritania", "Islamic Republic of Mauritania"},
	{"MS", "MSR", "Montserrat", ""},
	{"MT", "MLT", "Malta", "Republic of Malta"},
	{"MU", "MUS", "Mauritius", "Republic of Mauritius"},
	{"MV", "MDV", "Maldives", "Republic of Maldives"},
	{"MW", "MWI", "Malawi", "Republic of Malawi"},
	{"MX", "MEX", "Mexico", "United Mexican States"},
	{"MY", "MYS", "Malaysia", ""},
	{"MZ", "MOZ", "Mozambique", "Republic of Mozambique"},
	{"NA", "NAM", "Namibia", "Republic of Namibia"},
	{"NC", "NCL", "New Caledonia", ""},
	{"NE", "NER", "Niger", "Republic of the Niger"},
	{"NF", "NFK", "Norfolk Island", ""},
	{"NG", "NGA", "Nigeria", "Federal Republic of Nigeria"},
	{"NI", "NIC", "Nicaragua", "Republic of Nicaragua"},
	{"NL", "NLD", "Netherlands", "Kingdom of the Netherlands"},
	{"NO", "NOR", "Norway", "Kingdom of Norway"},
	{"NP", "NPL", "Nepal", "Federal Democratic Republic of Nepal"},
	{"NR", "NRU", "Nauru", "Republic of Nauru"},
	{"NU", "NIU", "Niue", ""},
	{"NZ", "NZL", "New Zealand", ""},
	{"OM", "OMN", "Oman", "Sultanate of Oman"},
	{"PA", "PAN", "Panama", "Republic of Panama"},
	{"PE", "PER", "Peru", "Republic of Peru"},
	{"PF", "PYF", "French Polynesia", ""},
	{"PG", "PNG", "Papua New Guinea", "Independent State of Papua New Guinea"},
	{"PH", "PHL", "Philippines", "Republic of the Philippines"},
	{"PK", "PAK", "Pakistan", "Islamic Republic of Pakistan"},
	{"PL", "POL", "Poland", "Republic of Poland"},
	{"PM", "SPM", "Saint Pierre and Miquelon", ""},
	{"PN", "PCN", "Pitcairn", ""},
	{"PR", "PRI", "Puerto Rico", ""},
	{"PS", "PSE", "Palestine, State of", "the State of Palestine"},
	{"PT", "PRT", "Portugal", "Portuguese Republic"},
	{"PW", "PLW", "Palau", "Republic of Palau"},
	{"PY", "PRY", "Paraguay", "Republic of Paraguay"},
	{"QA", "QAT", "Qatar", "State of Qatar"},
	{"RE", "REU", "Réunion", ""},
	{"RO", "ROU", "Romania", ""},
	{"RS", "SRB", "Serbia", "Republic of Serbia"},
	{"RU", "RUS", "Russian Federation", ""},
	{"RW", "RWA", "Rwanda", "Rwandese Republic"},
	{"SA", "SAU", "Saudi Arabia", "Kingdom of Saudi Arabia"},
	{"SB", "SLB", "Solomon Islands", ""},
	{"SC", "SYC", "Seychelles", "Republic of Seychelles"},
	{"SD", "SDN", "Sudan", "Republic of the Sudan"},
	{"SE", "SWE", "Sweden", "Kingdom of Sweden"},
	{"SG", "SGP", "Singapore", "Republic of Singapore"},
	{"SH", "SHN", "Saint Helena, Ascension and Tristan da Cunha", ""},
	{"SI", "SVN", "Slovenia", "Republic of Slovenia"},
	{"SJ", "SJM", "Svalbard and Jan Mayen", ""},
	{"SK", "SVK", "Slovakia", "Slovak Republic"},
	{"SL", "SLE", "Sierra Leone", "Republic of Sierra Leone"},
	{"SM", "SMR", "San Marino", "Republic of San Marino"},
	{"SN", "SEN", "Senegal", "Republic of Senegal"},
	{"SO", "SOM", "Somalia", "Federal Republic of Somalia"},
	{"SR", "SUR", "Suriname", "Republic of Suriname"},
	{"SS", "SSD", "South Sudan", "Republic of South Sudan"},
	{"ST", "STP", "Sao Tome and Principe", "Democratic Republic of Sao Tome and Principe"},
	{"SV", "SLV", "El Salvador", "Republic of El Salvador"},
	{"SX", "SXM", "Sint Maarten (Dutch part)", ""},
	{"SY", "SYR", "Syria", "Syrian Arab Republic"},
	{"SZ", "SWZ", "Eswatini", "Kingdom of Eswatini"},
	{"TC", "TCA", "Turks and Caicos Islands", ""},
	{"TD", "TCD", "Chad", "Republic of Chad"},
	{"TF", "ATF", "French Southern Territories", ""},
	{"TG", "TGO", "Togo", "Togolese Republic"},
	{"TH", "THA", "Thailand", "Kingdom of Thailand"},
	{"TJ", "TJK", "Tajikistan", "Republic of Tajikistan"},
	{"TK", "TKL", "Tokelau", ""},
	{"TL", "TLS", "Timor-Leste", "Democratic Republic of Timor-Leste"},
	{"TM", "TKM", "Turkmenistan", ""},
	{"TN", "TUN", "Tunisia", "Republic of Tunisia"},
	{"TO", "TON", "Tonga", "Kingdom of Tonga"},
	{"TR", "TUR", "Türkiye", "Republic of Türkiye"},
	{"TT", "TTO", "Trinidad and Tobago", "Republic of Trinidad and Tobago"},
	{"TV", "TUV", "Tuvalu", ""},
	{"TW", "TWN", "Taiwan", "Taiwan, Province of China"},
	{"TZ", "TZA", "Tanzania", "Tanzania, United Republic of|United Republic of Tanzania"},
	{"UA", "UKR", "Ukraine", ""},
	{"UG", "UGA", "Uganda", "Republic of Uganda"},
	{"UM", "UMI", "United States Minor Outlying Islands", ""},
	{"US", "USA", "United States", "United States of America"},
	{"UY", "URY", "Uruguay", "Eastern Republic of Uruguay"},
	{"UZ", "UZB", "Uzbekistan", "Republic of Uzbekistan"},
	{"VA", "VAT", "Holy See (Vatican City State)", ""},
	{"VC", "VCT", "Saint Vincent and the Grenadines", ""},
	{"VE", "VEN", "Venezuela", "Venezuela, Bolivarian Republic of|Bolivarian Republic of Venezuela"},
	{"VG", "VGB", "Virgin Islands, British", "British Virgin Islands"},
	{"VI", "VIR", "Virgin Islands, U.S.", "Virgin Islands of the United States"},
	{"VN", "VNM", "Vietnam", "Viet Nam|Socialist Republic of Viet Nam"},
	{"VU", "VUT", "Vanuatu", "Republic of Vanuatu"},
	{"WF", "WLF", "Wallis and Futuna", ""},
	{"WS", "WSM", "Samoa", "Independent State of Samoa"},
	{"YE", "YEM", "Yemen", "Republic of Yemen"},
	{"YT", "MYT", "Mayotte", ""},
	{"ZA", "ZAF", "South Africa", "Republic of South Africa"},
	{"ZM", "ZMB", "Zambia", "Republic of Zambia"},
	{"ZW", "ZWE", "Zimbabwe", "Republic of Zimbabwe"},
}
